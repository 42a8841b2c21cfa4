"""Folders that a long job fills resumably: claimed with their settings, written atomically, marked complete.

A folder holds ``corpus.json`` with the job's kind and settings from the moment a build claims it; a rerun
with other settings is refused instead of mixing two corpora, and ``complete`` is set only at the very end.
Every file is written under a temporary ``.NAME.part`` name and renamed into place, so an interruption
leaves only whole files and leftovers that :func:`remove_partial_files` sweeps.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CORPUS_FILE = "corpus.json"
MANIFEST_FILE = "manifest.csv"


class CorpusError(RuntimeError):
    """A corpus folder that cannot be built or used as asked; the message says how to fix it."""


def read_corpus_info(root: Path) -> dict[str, Any] | None:
    path = root / CORPUS_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CorpusError(f"{path}: not valid JSON ({err}). Delete {root} and build the corpus again.") from err


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def claim_folder(root: Path, kind: str, settings: dict[str, Any]) -> bool:
    """Start or resume a build in ``root``; returns True when the corpus there is already complete.

    Raises:
        CorpusError: ``root`` holds a corpus of another kind or built with other settings.
    """
    info = read_corpus_info(root)
    if info is None:
        if root.exists() and any(p.name != CORPUS_FILE for p in root.iterdir()):
            raise CorpusError(
                f"{root} is not empty and has no {CORPUS_FILE}: it is not a corpus this builder started. "
                "Choose an empty or new folder for the synthetic corpus."
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
    tmp = path.with_name(f".{path.name}.part")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def remove_partial_files(root: Path) -> int:
    """Delete leftovers of writes that an interruption cut short."""
    removed = 0
    for leftover in root.rglob(".*.part"):
        leftover.unlink(missing_ok=True)
        removed += 1
    return removed
