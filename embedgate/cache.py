"""The artifact cache: one folder per (backend, key), built atomically and verified by checksum.

A build writes into a temporary sibling folder and renames it into place only after its manifest
(sha256 of every file) is written, so an interrupted build never leaves a half artifact that a later
run would trust. A folder whose files no longer match their manifest is reported and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "embedgate-manifest.json"


def default_cache_dir() -> Path:
    from platformdirs import user_cache_dir

    return Path(os.environ.get("EMBEDGATE_CACHE") or user_cache_dir("embedgate"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_key(**parts: object) -> str:
    """A stable key from JSON-serialisable parts (source hash, backend, build parameters, versions)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


@dataclass
class CachedArtifact:
    path: Path
    built: bool
    build_seconds: float
    manifest: dict

    @property
    def size_bytes(self) -> int:
        return sum(int(entry["bytes"]) for entry in self.manifest["files"].values())


class ArtifactCache:
    def __init__(self, root: Path, log: Callable[[str], None] | None = None):
        self.root = Path(root)
        self.log = log or (lambda line: print(line, file=sys.stderr))

    def get_or_build(
        self, backend: str, key: str, build: Callable[[Path], None], describe: dict
    ) -> CachedArtifact:
        """Return the verified artifact folder for (backend, key), building it with `build(tmpdir)` if needed."""
        final = self.root / backend / key
        if final.is_dir():
            problem = verify_manifest(final)
            if problem is None:  # the build time the manifest recorded: what this artifact cost, for the report
                manifest = json.loads((final / MANIFEST).read_text())
                return CachedArtifact(final, False, float(manifest.get("build_seconds", 0.0)), manifest)
            self.log(f"embedgate: cached {backend} artifact at {final} is corrupt ({problem}); rebuilding")
            shutil.rmtree(final, ignore_errors=True)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        start = time.perf_counter()
        try:
            build(tmp)
            seconds = time.perf_counter() - start
            manifest = write_manifest(tmp, dict(describe, backend=backend, key=key, build_seconds=round(seconds, 3)))
            try:
                os.rename(tmp, final)
            except OSError:
                # another process finished the same build first; theirs is as good as ours
                if verify_manifest(final) is not None:
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.log(f"embedgate: built {backend} in {seconds:.1f}s -> {final}")
        return CachedArtifact(final, True, seconds, manifest)


def write_manifest(folder: Path, describe: dict) -> dict:
    files = {}
    for file in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        files[file.relative_to(folder).as_posix()] = {"sha256": sha256_file(file), "bytes": file.stat().st_size}
    if not files:
        raise RuntimeError(f"build wrote no files into {folder}")
    manifest = dict(describe, files=files)
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(tmp, folder / MANIFEST)
    return manifest


def verify_manifest(folder: Path) -> str | None:
    """None when every file matches its recorded size and sha256; else what is wrong."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError) as exc:
        return f"manifest unreadable: {exc}"
    for rel, entry in files.items():
        file = folder / rel
        if not file.is_file():
            return f"{rel} missing"
        if file.stat().st_size != entry["bytes"]:
            return f"{rel} has {file.stat().st_size} bytes, expected {entry['bytes']}"
        if sha256_file(file) != entry["sha256"]:
            return f"{rel} checksum mismatch"
    return None
