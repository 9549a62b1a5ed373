"""The artifact cache: one folder per (backend, key), built atomically and verified by checksum.

A build writes into a temporary sibling folder and renames it into place only after its manifest
(sha256 of every file) is written, so an interrupted build never leaves a half artifact that a later
run would trust. A folder whose files no longer match their manifest is reported and rebuilt.

A build holds `.locks/<backend>/<key>.lock` (flock; kept apart so that a backend's folder holds artifacts only),
so two runs sharing a cache build a key once: the second waits, then reuses. A temporary folder whose builder
died (its pid file names a dead process, or it is older than STALE_SECONDS without one) is removed on the next
access. Every such event is kept in `ArtifactCache.events` for the terminal summary and the report, not only
printed (pytest's capture would swallow it).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from embedgate import EmbedgateError

try:
    import fcntl
except ImportError:  # not POSIX: builds are not locked against each other
    fcntl = None  # type: ignore[assignment]  # the module or None: what the code below checks

MANIFEST = "embedgate-manifest.json"
PID_FILE = "embedgate-build.pid"  # inside a .tmp-* folder: "pid host" of the process building into it
STALE_SECONDS = 3600.0  # a .tmp-* folder without a readable pid file is a dead build's after this long


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


@dataclass
class CacheEvent:
    """One thing the cache did: built, reused, corrupt (then rebuilt), waited (for another build), stale-removed."""

    kind: str
    backend: str
    key: str
    path: str
    message: str
    seconds: float | None = None

    def as_dict(self) -> dict:
        return {"kind": self.kind, "backend": self.backend, "key": self.key, "path": self.path,
                "message": self.message, "seconds": self.seconds}


class ArtifactCache:
    def __init__(self, root: Path, log: Callable[[str], None] | None = None):
        self.root = Path(root)
        self.log = log or (lambda line: print(line, file=sys.stderr))  # noqa: T201 (a message for people, outside pytest)
        self.events: list[CacheEvent] = []

    def _event(self, kind: str, backend: str, key: str, path: Path, message: str, seconds: float | None = None,
               *, show: bool = True) -> None:
        self.events.append(CacheEvent(kind, backend, key, str(path), message, seconds))
        if show:
            self.log(message)

    def get_or_build(
        self, backend: str, key: str, build: Callable[[Path], None], describe: dict
    ) -> CachedArtifact:
        """Return the verified artifact folder for (backend, key), building it with `build(tmpdir)` if needed.

        The cache's own file operations failing (read-only or full disk, a file where a folder should be) is an
        EmbedgateError naming the path: one line for that backend, not a traceback in every test."""
        folder = self.root / backend
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._remove_stale(backend, folder)
            with self._locked(backend, key, folder):
                return self._get_or_build(backend, key, build, describe)
        except OSError as exc:
            raise EmbedgateError(self._os_error_line(backend, exc)) from exc

    def _os_error_line(self, backend: str, exc: OSError) -> str:
        """One line for an OSError during a cache access or build: the cache's fault, or the build's."""
        where = str(exc.filename or "")
        if where.startswith(str(self.root)) or exc.errno in (errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES):
            return (f"artifact cache {self.root}: cannot write {backend}'s artifact ({where or 'no path'}: "
                    f"{exc.strerror or exc}); give a writable --artifact-cache with room for it")
        return f"building {backend} failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"

    def _get_or_build(self, backend: str, key: str, build: Callable[[Path], None], describe: dict) -> CachedArtifact:
        final = self.root / backend / key
        if final.is_dir():
            problem = verify_manifest(final)
            if problem is None:  # the build time the manifest recorded: what this artifact cost, for the report
                manifest = json.loads((final / MANIFEST).read_text())
                seconds = float(manifest.get("build_seconds", 0.0))
                self._event("reused", backend, key, final, f"embedgate: reused cached {backend} -> {final}", seconds,
                            show=False)
                return CachedArtifact(final, False, seconds, manifest)
            self._event("corrupt", backend, key, final,
                        f"embedgate: cached {backend} artifact at {final} is corrupt ({problem}); rebuilding")
            shutil.rmtree(final, ignore_errors=True)
        tmp = final.parent / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        (tmp / PID_FILE).write_text(f"{os.getpid()} {socket.gethostname()}\n")
        self.log(f"embedgate: building {backend} -> {final}")
        start = time.perf_counter()
        try:
            build(tmp)
            (tmp / PID_FILE).unlink()  # not part of the artifact
            seconds = time.perf_counter() - start
            manifest = write_manifest(tmp, dict(describe, backend=backend, key=key, build_seconds=round(seconds, 3)))
            try:
                os.rename(tmp, final)
            except OSError:
                # another process finished the same build first (no lock on this platform); theirs is as good
                if verify_manifest(final) is not None:
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._event("built", backend, key, final, f"embedgate: built {backend} in {seconds:.1f}s -> {final}", seconds)
        return CachedArtifact(final, True, seconds, manifest)

    @contextmanager
    def _locked(self, backend: str, key: str, folder: Path) -> Iterator[None]:
        """Hold .locks/<backend>/<key>.lock; a second process building the same key waits here, then reuses."""
        if fcntl is None:
            yield
            return
        locks = self.root / ".locks" / backend
        locks.mkdir(parents=True, exist_ok=True)
        with open(locks / f"{key}.lock", "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                start = time.perf_counter()
                holder = ""
                # the holder writes its pid just after taking the lock: give it that moment before naming it
                while not holder and time.perf_counter() - start < 0.5:
                    fh.seek(0)
                    holder = fh.read().strip()
                    if not holder:
                        time.sleep(0.01)
                holder = holder or "another process"
                self.log(f"embedgate: waiting for {holder} building the same {backend} artifact ({fh.name})")
                fcntl.flock(fh, fcntl.LOCK_EX)
                waited = time.perf_counter() - start
                self._event("waited", backend, key, folder / key,
                            f"embedgate: waited {waited:.1f}s for {holder} building {backend}", waited)
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} on {socket.gethostname()}")
            fh.flush()
            try:
                yield
            finally:
                fh.seek(0)
                fh.truncate()  # no stale pid for the next waiter to name
                fh.flush()
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _remove_stale(self, backend: str, folder: Path) -> None:
        """Remove .tmp-* folders of builds that were killed (dead pid, or old and without a pid file)."""
        for tmp in folder.glob(".tmp-*"):
            why = _stale_reason(tmp)
            if why is None:
                continue
            shutil.rmtree(tmp, ignore_errors=True)
            if not tmp.exists():
                self._event("stale-removed", backend, tmp.name.split("-")[1] if "-" in tmp.name else "", tmp,
                            f"embedgate: removed the stale build folder {tmp} ({why})")


def _stale_reason(tmp: Path) -> str | None:
    """Why a .tmp-* folder belongs to no live build, or None while its builder may still be running."""
    try:
        pid_text, _, host = (tmp / PID_FILE).read_text().strip().partition(" ")
        pid = int(pid_text)
    except (OSError, ValueError):
        pid, host = None, ""
    if pid is not None and host == socket.gethostname():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return f"its builder, pid {pid}, is gone"
        except PermissionError:  # alive, another user's
            return None
        return None
    try:
        age = time.time() - tmp.stat().st_mtime
    except OSError:
        return None
    if age > STALE_SECONDS:
        return f"{age / 3600:.1f} h old, no live builder recorded"
    return None


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
