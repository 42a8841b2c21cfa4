"""Folders that a long job fills resumably: claimed with their settings, written atomically, marked complete.

A folder holds ``corpus.json`` with the job's kind and settings from the moment a build claims it; a rerun
with other settings is refused instead of mixing two corpora, and ``complete`` is set only at the very end.
Every file is written under a temporary ``.NAME.<random>.part`` name and renamed into place, so an
interruption leaves only whole files and leftovers that :func:`remove_partial_files` sweeps.

Writers lock the folder (:class:`FolderLock`, ``fcntl.flock`` on a file inside it): a second writer of the
same work gets :class:`FolderBusyError` naming the folder and the pid of the run that holds it, and leftovers
are swept only while no other run writes there.
"""

from __future__ import annotations

import csv
import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CORPUS_FILE = "corpus.json"
MANIFEST_FILE = "manifest.csv"
log = logging.getLogger(__name__)
LOCK_FILE = ".lock"


class CorpusError(RuntimeError):
    """A corpus folder that cannot be built or used as asked; the message says how to fix it."""


class FolderBusyError(RuntimeError):
    """Another live run writes into the folder; the message names the folder and that run's pid."""


class FolderLock:
    """An advisory lock on ``path`` (a lock file), released when the process ends however it ends.

    Exclusive holders write their pid into the file, so a refused writer can say who holds it.

    Args:
        path: the lock file; created if missing.
        what: what the holder does there, for messages (e.g. ``"shard 0 of 2 of data/x"``).
    """

    def __init__(self, path: str | os.PathLike, what: str) -> None:
        self.path = Path(path)
        self.what = what
        self.fd: int | None = None

    def acquire(self, exclusive: bool = True, wait: bool = False) -> FolderLock:
        """Take the lock; without ``wait``, refuse at once when it is held.

        Raises:
            FolderBusyError: another process holds it (exclusively, or shared when ``exclusive``) and ``wait`` is off.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if wait:
                log.info("%s: waiting for the run that holds it (pid %s)", self.what, holder_of(self.path))
                fcntl.flock(fd, mode)
                return self._held(fd, exclusive)
            os.close(fd)
            raise FolderBusyError(
                f"{self.what}: in use by another run (pid {holder_of(self.path)}). Wait for it to finish or stop "
                "it; two runs writing here would redo each other's work and delete each other's temporary files."
            ) from None
        return self._held(fd, exclusive)

    def _held(self, fd: int, exclusive: bool) -> FolderLock:
        if exclusive:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire() if self.fd is None else self

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder_of(path: Path) -> str:
    """The pids of the live runs holding ``path`` exclusively or the other lock files beside it (a folder shared by
    shards has one per shard), as each holder recorded it."""
    held = [path] if path.is_file() and is_held(path) else []  # else its pid is of a holder long gone
    held += [p for p in sorted(path.parent.glob(".*.lock")) if p != path and is_held(p)]
    pids = sorted({p.read_text().strip() for p in held} - {""})
    return ", ".join(pids) or "unknown"


def is_held(path: Path) -> bool:
    """Whether some process holds the lock file ``path`` exclusively."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock taken here
    return False


def partial_name(path: Path) -> Path:
    """A fresh temporary name beside ``path`` that :func:`remove_partial_files` recognises."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.fchmod(fd, 0o644)  # mkstemp's 0600 would follow the file into place
    os.close(fd)
    return Path(tmp)


def is_bookkeeping(path: Path) -> bool:
    """The lock file and interrupted writes' leftovers: not content, so not a sign of another folder's files."""
    return path.name == LOCK_FILE or (path.name.startswith(".") and path.name.endswith(".part"))


def read_corpus_info(root: Path) -> dict[str, Any] | None:
    path = root / CORPUS_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CorpusError(f"{path}: not valid JSON ({err}). Delete {root} and build the corpus again.") from err


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    tmp = partial_name(path)
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def claim_folder(root: Path, kind: str, settings: dict[str, Any]) -> bool:
    """Start or resume a build in ``root``; returns True when the corpus there is already complete.

    Raises:
        CorpusError: ``root`` holds a corpus of another kind or built with other settings.
    """
    info = read_corpus_info(root)
    if info is None:
        # A claim killed while writing corpus.json leaves only its .part file (and the lock): still a fresh folder.
        others = sorted(p.name for p in root.iterdir() if not is_bookkeeping(p)) if root.exists() else []
        if CORPUS_FILE in others:  # another builder claimed the folder between our two looks: check its claim
            return claim_folder(root, kind, settings)
        if others:
            raise CorpusError(
                f"{root} is not empty and has no {CORPUS_FILE} (it holds {', '.join(others[:3])}"
                f"{', ...' if len(others) > 3 else ''}): it is not a corpus this builder started. Choose an empty or "
                "new folder."
            )
        root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(root / CORPUS_FILE, {"kind": kind, "settings": settings, "complete": False})
        return False
    if info.get("kind") != kind:
        raise CorpusError(f"{root} holds a {info.get('kind')!r} corpus, not {kind!r}. Choose another folder.")
    if info.get("settings") != settings:
        old = info.get("settings", {})
        changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        details = ", ".join(f"{k}: {old.get(k)!r} -> {settings.get(k)!r}" for k in changed)
        raise CorpusError(
            f"{root} was built with other settings ({details}). Delete the folder to rebuild it, "
            "or point the data module at a new folder."
        )
    return bool(info.get("complete"))


def finish_folder(root: Path, extra: dict[str, Any]) -> None:
    info = read_corpus_info(root) or {}
    info.update(extra)
    info["complete"] = True
    write_json_atomic(root / CORPUS_FILE, info)


def write_manifest(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    tmp = partial_name(path)
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def remove_partial_files(root: Path) -> int:
    """Delete leftovers of writes that an interruption cut short (call it only while holding the folder's lock)."""
    removed = 0
    for leftover in root.rglob(".*.part"):
        leftover.unlink(missing_ok=True)
        removed += 1
    return removed
