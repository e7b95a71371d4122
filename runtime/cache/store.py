"""Per-machine cache of ONNX Runtime's optimised CPU graph: cheaper cold starts, and safe.

With all graph optimisations on, ONNX Runtime rewrites ResNet50 for this CPU (NCHWc
layouts, fused convolutions) at every session creation; while it does, the original and
the rewritten weights are both in memory. Measured on ResNet50 FP32 (2-core x86):
peak RSS 316 MiB and 495 ms to create the session from the exported file, vs 177 MiB
and ~300 ms from the saved optimised graph loaded with optimisations off; inference
speed is the same. So the first CPU run saves the optimised graph here, later runs load it.

A cache that serves the wrong graph is worse than none, so:

* **Keyed by content.** The key is the sha256 of the model's bytes (plus ONNX Runtime's
  version, the CPU's instruction set and this cache's format). Path, size and mtime were
  the key before, and a re-export of the same architecture has the same size: replacing
  the file while keeping its mtime served the old model's predictions. Hashing a 97 MiB
  model takes 77 ms here (2-core AMD EPYC, SHA-NI), 13% of a cold one-image run, so the
  digest itself is remembered the way git's index remembers blob ids: under the file's
  device, inode, size, mtime *and ctime*. Any write, rename or ``touch -r`` gives the file
  a new ctime (which no ordinary user can set back), hence a new memo and a fresh hash;
  a memo is only written for a file unchanged for ``_STABLE_S``, so a write in the same
  clock tick as the hash cannot hide.
* **Only our own files.** The directory is created 0700; a directory or entry not owned
  by the current user, or writable by others, is refused (a shared ``EDGE_CLASSIFY_HOME``
  let another user plant a graph that was then served). Entries are opened relative to
  the checked directory's descriptor, without following links, and loaded through
  ``/proc/self/fd`` where it exists, so nothing can be swapped in between check and load.
* **Whole or absent.** ONNX Runtime writes an entry under a temporary name; it is renamed
  into place only after the model passed its checks against its contract (a rejected
  model is never cached), and stale temporaries of dead processes are swept.
* **Bounded.** The total size is capped (``EDGE_CLASSIFY_CACHE_MAX_MB``, default 1024);
  the least recently used entries are evicted.

Only for CPU-only sessions: GPU providers optimise differently.
``EDGE_CLASSIFY_NO_CACHE=1`` turns it off.

The same folder, under the same rules, holds OpenVINO's compiled blobs (``.ovblob``,
``openvino_runner.py``) and the engine choices measured per model (``.engine`` records,
``engines/policy.py``), small records that are capped by count like the digest memos.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import secrets
import stat
import time
from pathlib import Path

from ..host import cpu
from .orphans import orphaned
from .paths import home

FORMAT = "2"  # bump when the key or the entry layout changes
DEFAULT_MAX_MB = 1024
_ENTRY = re.compile(r"^[0-9a-f]{40}\.(?:onnx|ovblob)$")  # ORT graphs, OpenVINO compiled blobs
_PARTIAL = re.compile(r"^\.([0-9a-f]{40})(?:\.(?:sha256|engine|ovblob))?\.(\d+)\.[0-9a-f]+\.partial$")
_LEGACY = re.compile(r"^.+-[0-9a-f]{20}\.onnx$")  # format 1: <stem>-<path/mtime key>.onnx
_RECORD = re.compile(r"^[0-9a-f]{40}\.(?:sha256|engine)$")  # small text records, not evicted by size
_STABLE_S = 2.0  # a model younger than this (by ctime) gets no digest memo
_MAX_MEMOS = 1000
_POSIX = os.name == "posix"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class Refused(Exception):
    """The cache directory cannot be trusted; run uncached and say why."""


def enabled() -> bool:
    return os.environ.get("EDGE_CLASSIFY_NO_CACHE", "") in ("", "0")


def cache_dir() -> Path:
    return home() / "ort-cache"


def max_bytes() -> int:
    try:
        return max(0, int(float(os.environ.get("EDGE_CLASSIFY_CACHE_MAX_MB", DEFAULT_MAX_MB)) * 2**20))
    except (ValueError, OverflowError):  # "inf", "lots": the default, not a failed model load
        return DEFAULT_MAX_MB * 2**20


def sha256_fd(fd: int) -> str:
    """sha256 of a file's bytes, read through ``fd`` from its start."""
    h = hashlib.sha256()
    os.lseek(fd, 0, os.SEEK_SET)
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        h.update(chunk)
    os.lseek(fd, 0, os.SEEK_SET)
    return h.hexdigest()


def entry_key(model_sha256: str, ort_version: str, level: str) -> str:
    key = "|".join([FORMAT, model_sha256, ort_version, level, platform.machine(), cpu.flags_or_name()])
    return hashlib.sha256(key.encode()).hexdigest()[:40]


def fd_path(fd: int, fallback: str) -> str:
    """A path that opens exactly the file (or directory) behind ``fd``, where the OS has one."""
    proc = f"/proc/self/fd/{fd}"
    return proc if os.path.exists(proc) else fallback


def untrusted_reason(st: os.stat_result) -> str | None:
    """Why a file or directory with this stat cannot be trusted (another user can change it), or None."""
    if not _POSIX:
        return None
    if st.st_uid != os.geteuid():
        return f"owned by uid {st.st_uid}, not by you (uid {os.geteuid()})"
    if st.st_mode & 0o022:
        return f"writable by others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


class CacheDir:
    """The cache directory, opened and checked once; entries are reached through its descriptor."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path or cache_dir())
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.mkdir(self.path, 0o700)
            except FileExistsError:
                pass
            if self.path.is_symlink():
                raise Refused(f"{self.path} is a symbolic link; not using it (remove it: the runtime "
                              "creates its own private folder)")
            self.fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | _CLOEXEC)
        except OSError as exc:
            raise Refused(f"cannot open {self.path}: {exc.strerror or exc}") from None
        st = os.fstat(self.fd)
        why = untrusted_reason(st) if stat.S_ISDIR(st.st_mode) else "not a directory"
        if why:
            os.close(self.fd)
            fix = ("chmod 700 it" if _POSIX and st.st_uid == os.geteuid()
                   else "set EDGE_CLASSIFY_HOME to a folder of your own")
            raise Refused(f"{self.path} is {why}; not using it ({fix})")
        if _POSIX and st.st_mode & 0o077:  # ours but readable by others (format 1 made it 0755)
            os.fchmod(self.fd, 0o700)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _child(self, name: str) -> str:
        return fd_path(self.fd, str(self.path)) + "/" + name

    def lookup(self, key: str, suffix: str = ".onnx") -> tuple[int, str] | None:
        """(open descriptor, path that loads it) for a trusted entry, or None."""
        try:
            # Non-blocking: a FIFO planted under an entry's name must not hang the open.
            fd = os.open(f"{key}{suffix}", os.O_RDONLY | _NOFOLLOW | _CLOEXEC | getattr(os, "O_NONBLOCK", 0),
                         dir_fd=self.fd)
        except OSError:  # absent, or a symlink (ELOOP): a miss either way
            return None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or untrusted_reason(st):
            os.close(fd)  # not ours: never loaded; the store below replaces it
            return None
        try:
            os.utime(fd)  # last use, for eviction
        except OSError:
            pass
        return fd, fd_path(fd, str(self.path / f"{key}{suffix}"))

    def reserve(self, key: str) -> tuple[str, str]:
        """(temporary name, path for ONNX Runtime's ``optimized_model_filepath``)."""
        self.sweep()
        tmp = f".{key}.{os.getpid()}.{secrets.token_hex(6)}.partial"
        return tmp, self._child(tmp)

    def _write_new(self, tmp: str, data: bytes) -> bool:
        """Create ``tmp`` (never an existing name or a link) holding ``data``; False on failure."""
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600, dir_fd=self.fd)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            return True
        except OSError:
            self.discard(tmp)
            return False

    def store(self, key: str, suffix: str, data: bytes) -> bool:
        """Write an entry whole (temporary name, then an atomic rename), or not at all."""
        tmp, _ = self.reserve(key)
        return self._write_new(tmp, data) and self.commit(tmp, key, suffix)

    def commit(self, tmp: str, key: str, suffix: str = ".onnx") -> bool:
        """Move a finished entry into place (atomically) and evict down to the size cap."""
        if _POSIX:
            try:
                os.chmod(tmp, 0o600, dir_fd=self.fd)  # ONNX Runtime created it 0644
            except OSError:
                pass
        try:
            size = os.stat(tmp, dir_fd=self.fd, follow_symlinks=False).st_size
            if size > max_bytes():  # could never fit: do not evict everything else for it
                self.discard(tmp)
                return False
            os.replace(tmp, f"{key}{suffix}", src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except OSError:
            self.discard(tmp)
            return False
        self.evict(keep=f"{key}{suffix}")
        return True

    def discard(self, tmp: str) -> None:
        try:
            os.unlink(tmp, dir_fd=self.fd)
        except OSError:
            pass

    # --- digest memos: the model's sha256 remembered under its stat identity -------------
    @staticmethod
    def _memo_name(st: os.stat_result) -> str:
        ident = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
        return hashlib.sha256(ident.encode()).hexdigest()[:40] + ".sha256"

    def remembered_digest(self, st: os.stat_result) -> str | None:
        text = self.read_record(self._memo_name(st))
        return text if text and re.fullmatch(r"[0-9a-f]{64}", text) else None

    def remember_digest(self, st: os.stat_result, digest: str) -> None:
        if time.time() - st.st_ctime < _STABLE_S:
            return  # might still be being written: hash it again next time
        self.write_record(self._memo_name(st), digest)

    # --- small text records (digest memos, engine choices), capped by count ---------------
    def read_record(self, name: str, limit: int = 65536) -> str | None:
        try:
            fd = os.open(name, os.O_RDONLY | _NOFOLLOW | _CLOEXEC | getattr(os, "O_NONBLOCK", 0), dir_fd=self.fd)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or untrusted_reason(st):
                return None
            return os.read(fd, limit).decode("utf-8", "replace").strip()
        except OSError:
            return None
        finally:
            os.close(fd)

    def write_record(self, name: str, text: str) -> None:
        tmp = f".{name}.{os.getpid()}.{secrets.token_hex(6)}.partial"
        if not self._write_new(tmp, text.encode("utf-8")):
            return
        try:
            os.replace(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except OSError:
            self.discard(tmp)
            return
        records = [n for n in os.listdir(self.fd) if _RECORD.match(n)]
        if len(records) > _MAX_MEMOS:  # models come and go: keep the newest records
            ages = sorted((os.stat(n, dir_fd=self.fd, follow_symlinks=False).st_mtime, n) for n in records)
            for _, old in ages[: len(records) - _MAX_MEMOS]:
                self.discard(old)

    def _entries(self) -> list[tuple[float, int, str]]:
        out = []
        for name in os.listdir(self.fd):
            if _ENTRY.match(name):
                try:
                    st = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
                except OSError:
                    continue
                out.append((st.st_mtime, st.st_size, name))
        return sorted(out)

    def total_bytes(self) -> int:
        return sum(size for _, size, _ in self._entries())

    def evict(self, keep: str | None = None) -> list[str]:
        """Remove least recently used entries until the total fits the cap."""
        entries = self._entries()
        total, cap, removed = sum(e[1] for e in entries), max_bytes(), []
        for _, size, name in entries:
            if total <= cap:
                break
            if name == keep:
                continue
            try:
                os.unlink(name, dir_fd=self.fd)
                total -= size
                removed.append(name)
            except OSError:
                pass
        return removed

    def sweep(self) -> None:
        """Remove temporaries of processes that died mid-write, and format-1 entries."""
        now = time.time()
        for name in os.listdir(self.fd):
            m = _PARTIAL.match(name)
            try:
                if m:
                    mtime = os.stat(name, dir_fd=self.fd, follow_symlinks=False).st_mtime
                    if orphaned(int(m.group(2)), mtime, now):
                        os.unlink(name, dir_fd=self.fd)
                elif _LEGACY.match(name):
                    os.unlink(name, dir_fd=self.fd)
            except OSError:
                pass
