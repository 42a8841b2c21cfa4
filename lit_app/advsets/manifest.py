"""The manifest of an adversarial corpus: one row per clip, and the checks a corpus must pass to be used.

``manifest.csv`` columns (:data:`FIELDS`): the clip (``id``, ``path`` relative to the corpus folder,
``kind`` clean/adversarial/noise, detection ``label`` normal/adversarial, detection ``split``), its source
(``source_id``, ``source_path``, ``source_split``, ``source_label``, ``group`` = speaker or voice), how it was
made (``attack``, ``attack_settings`` as JSON, ``target``, ``seed``, ``victim``, ``victim_sha256``) and
what came of it (``prediction`` of the victim on the written clip, ``success``, ``db_x``, ``snr_db``,
``linf`` in int16 units, ``queries``, ``iterations``, ``num_samples``).
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

from lit_app import folders
from lit_app.audio.io import AudioError, check_complete
from lit_app.splits import SPLITS

FIELDS = (
    "id", "path", "kind", "label", "split",
    "source_id", "source_path", "source_split", "source_label", "group",
    "attack", "attack_settings", "target", "seed", "victim", "victim_sha256",
    "prediction", "success", "db_x", "snr_db", "linf", "queries", "iterations", "num_samples",
)
KINDS = ("clean", "adversarial", "noise")
LABELS = ("normal", "adversarial")
MANIFEST_FILE = "manifest.csv"
_INTS = ("seed", "linf", "queries", "iterations", "num_samples")
_FLOATS = ("db_x", "snr_db")


class ManifestError(ValueError):
    """A manifest that cannot be trusted; the message names the corpus, the row and the fix."""


def inside(root: Path, relative: str) -> Path:
    """``root / relative``, refusing paths that are absolute or lead out of ``root`` (``..``, symlinks).

    Raises:
        ManifestError: the path would leave the corpus folder.
    """
    if not relative or Path(relative).is_absolute():
        raise ManifestError(f"{root}: path {relative!r} is not relative to the corpus folder; manifests list "
                            "clips inside the corpus only")
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise ManifestError(f"{root}: path {relative!r} leads outside the corpus folder; refusing it")
    return path


def to_text(row: dict[str, Any]) -> dict[str, str]:
    """A row as CSV text: booleans as ``true``/``false``, missing values empty, settings as JSON."""
    out = {}
    for field in FIELDS:
        value = row.get(field, "")
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, dict):
            value = json.dumps(value, sort_keys=True)
        elif value is None:
            value = ""
        out[field] = str(value)
    return out


def parse(row: dict[str, str]) -> dict[str, Any]:
    """A CSV row with typed values (empty fields become ``None``)."""
    out: dict[str, Any] = dict(row)
    for field in _INTS:
        out[field] = int(row[field]) if row[field] != "" else None
    for field in _FLOATS:
        out[field] = float(row[field]) if row[field] != "" else None
    out["success"] = {"true": True, "false": False}.get(row["success"])
    return out


def write_manifest(root: Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``manifest.csv`` atomically."""
    path = root / MANIFEST_FILE
    tmp = folders.partial_name(path)
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(FIELDS))
        writer.writeheader()
        writer.writerows(to_text(row) for row in rows)
    os.replace(tmp, path)
    return path


def read_manifest(root: str | os.PathLike, check_audio: bool = True) -> list[dict[str, Any]]:
    """The rows of a corpus's manifest, validated.

    Checks: the columns, unique ids and files, known kinds, labels and splits, that every path stays inside ``root``,
    and (``check_audio``) that every file exists and is 16 kHz mono 16-bit PCM of the listed length.

    Raises:
        ManifestError: the first problem found, naming the row.
    """
    root = Path(root)
    path = root / MANIFEST_FILE
    rows, seen, lines_of_clips = [], set(), {}
    for number, text in enumerate(read_raw_rows(path), start=2):
        where = f"{path}, line {number} ({text.get('id')!r})"
        if text["id"] in seen:
            raise ManifestError(f"{where}: duplicate id")
        seen.add(text["id"])
        row, clip = check_row(root, text, where)
        if clip in lines_of_clips:
            raise ManifestError(f"{where}: {text['path']} is also the clip of line {lines_of_clips[clip]}; each row "
                                "needs a file of its own. Rebuild the corpus.")
        lines_of_clips[clip] = number
        if check_audio:
            check_clip(clip, row["num_samples"], where)
        rows.append(row)
    return rows


def read_raw_rows(path: Path) -> list[dict[str, str]]:
    """The manifest's rows as text, once its columns are checked."""
    if not path.is_file():
        raise ManifestError(f"{path}: no manifest. The corpus is unfinished: build it (prepare_data) to finish it.")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [f for f in FIELDS if f not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(f"{path}: missing columns {missing}; it was not written by this version of lit-app")
        return list(reader)


def check_row(root: Path, text: dict[str, str], where: str) -> tuple[dict[str, Any], Path]:
    """One row typed, and its clip's path (inside ``root``); ``where`` names the row in errors."""
    if text["kind"] not in KINDS or text["label"] not in LABELS or text["split"] not in SPLITS:
        raise ManifestError(f"{where}: kind/label/split must be in {KINDS}/{LABELS}/{SPLITS}")
    try:
        return parse(text), inside(root, text["path"])
    except ManifestError as err:
        raise ManifestError(f"{where}: {err}") from err
    except ValueError as err:
        raise ManifestError(f"{where}: {err}") from err


def check_clip(clip: Path, num_samples: int | None, where: str) -> None:
    """The clip exists, is whole, and is 16 kHz mono PCM_16 of ``num_samples`` samples (when given)."""
    import soundfile as sf

    if not clip.is_file():
        raise ManifestError(f"{where}: {clip} is missing. Rebuild the corpus (a rerun restores missing clips "
                            "only before the manifest is written: delete the folder to rebuild it).")
    try:
        check_complete(clip)
    except AudioError as err:
        raise ManifestError(f"{where}: {err}") from err
    info = sf.info(str(clip))
    if info.samplerate != 16000 or info.channels != 1 or info.subtype != "PCM_16":
        raise ManifestError(f"{where}: {clip} is {info.samplerate} Hz, {info.channels} channels, {info.subtype}; "
                            "corpus clips are 16 kHz mono PCM_16")
    if num_samples is not None and info.frames != num_samples:
        raise ManifestError(f"{where}: {clip} has {info.frames} samples, the manifest says {num_samples}")


def finite_mean(values: list[float | None]) -> float | None:
    """Mean of the finite values (an untouched clip has infinite SNR), ``None`` if there are none."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else None
