"""Cold start: what a container restart pays, measured in a fresh process.

    python -m embedgate.coldstart --model DIR --backend NAME --cache DIR --threads N [--artifact PATH]
        [--distill-corpus FILE] [--calibration-corpus FILE] [--data-dir DIR]

Prints one JSON line: seconds to import the runtime, seconds to load the (already built) artifact, seconds of
the first encode, and the process's peak resident memory after it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from embedgate.protocol import BuildOptions


def peak_rss_kb() -> int:
    """This process's own peak RSS. Not ru_maxrss: Linux carries it across exec, so a child started from a pytest
    process that holds every loaded backend would report the parent's size, growing backend after backend. VmHWM
    belongs to the process's own address space, which exec makes new."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # not Linux: no such carry-over to avoid


def measure_cold_start(model_path: Path, backend_name: str, cache_dir: Path, threads: int, artifact: Path | None,
            options: BuildOptions | None = None) -> dict:
    started = time.perf_counter()
    from embedgate.cache import ArtifactCache
    from embedgate.model import load_model_spec
    from embedgate.protocol import BuildContext, BuildOptions
    from embedgate.registry import builtin_registry

    registry = builtin_registry()
    spec = registry[backend_name]
    module = spec.factory.partition(":")[0] if isinstance(spec.factory, str) else None
    if module:
        __import__(module)
        for name in spec.requires:
            __import__(name)
    imported = time.perf_counter()
    model = load_model_spec(model_path)
    cache = ArtifactCache(cache_dir, log=lambda line: print(line, file=sys.stderr))
    # no GGUF probe: the run that spawned this process probed the file already
    build_options = dataclasses.replace(options or BuildOptions(), probe=False)
    backend = spec.load(BuildContext(model, cache, threads, artifact, build_options))
    loaded = time.perf_counter()
    backend.encode(["a first request after a container restart"], role="query")
    encoded = time.perf_counter()
    peak_kb = peak_rss_kb()
    return {
        "backend": backend_name, "import_seconds": round(imported - started, 3),
        "load_seconds": round(loaded - imported, 3), "first_encode_seconds": round(encoded - loaded, 3),
        "peak_rss_mb": round(peak_kb / 1024, 1), "built_now": backend.metadata.built_now,
    }


def coldstart_command(egsession, name: str) -> list[str]:
    """The command that measures backend `name`'s cold start as the run built or was given it: its model, cache,
    threads, --artifact, and the corpus options its cached artifact is keyed on (model2vec-tuned's, the static
    builds')."""
    command = [sys.executable, "-m", "embedgate.coldstart", "--model", str(egsession.model.path),
               "--backend", name, "--cache", str(egsession.cache.root), "--threads", str(egsession.threads)]
    if name in egsession.artifacts:
        command += ["--artifact", str(egsession.artifacts[name])]
    build = egsession.options.build
    for option, value in (("--distill-corpus", build.distill_corpus), ("--calibration-corpus", build.calibration_corpus),
                          ("--data-dir", build.data_dir)):
        if value:
            command += [option, str(value)]
    return command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="cold-start load time and peak RSS of one backend")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--backend", required=True)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--artifact", type=Path, default=None)
    # the run's corpus options: model2vec-tuned's and the static builds' cached artifacts are keyed on them
    parser.add_argument("--distill-corpus", type=Path, default=None)
    parser.add_argument("--calibration-corpus", type=Path, default=None)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    from embedgate.protocol import BuildOptions

    options = BuildOptions(distill_corpus=args.distill_corpus, calibration_corpus=args.calibration_corpus,
                           data_dir=args.data_dir)
    print(json.dumps(measure_cold_start(args.model, args.backend, args.cache, args.threads, args.artifact, options)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
