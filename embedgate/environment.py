"""What the numbers were measured on: CPU, flags, cores, thread budget, library versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from functools import lru_cache

LIBRARIES = (
    "torch", "transformers", "sentence-transformers", "onnxruntime", "onnx", "llama-cpp-python", "model2vec",
    "mteb", "numpy", "pytest-benchmark",
)
INTERESTING_FLAGS = ("avx", "avx2", "avx512f", "avx512_vnni", "avx512vnni", "avx_vnni", "amx_tile", "fma", "f16c", "neon")


@lru_cache(maxsize=1)
def cpu_info() -> dict:
    model = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return {"model": model, "flags": sorted(f for f in flags if f in INTERESTING_FLAGS), "logical_cpus": os.cpu_count()}


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask; all of them where there is none: not Linux)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def environment_info(threads: int | None) -> dict:
    return {
        "cpu": cpu_info(),
        "usable_cpus": usable_cpus(),
        "threads": threads,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "libraries": library_versions(),
    }
