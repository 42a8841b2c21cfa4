"""Adversarial-detection datasets made elsewhere: the paper's released set A, class folders, CSV lists.

Three readers turn a folder into :class:`DetectionClip` records (path, label, group, attack); a group is the
unit that never straddles splits, i.e. a source clip together with every adversarial clip made from it,
wherever the layout reveals the pairing. :class:`ExternalDetectionDataModule` splits the records by group
and serves the detection batch contract of :mod:`lit_app.advsets.detection`.

Layouts:

- ``set_a``: the white-box set of Samizade et al. as unpacked by its users,
  ``Adversarial-Examples/<len>-signals/adv-<len>-target/adv-<src>2<tgt>-<id>.wav``,
  ``Adversarial-Examples/<len>-signals/Original-examples/*.wav``, ``Normal-Examples/<len>-signals/*.wav``.
  Clips are grouped by the digits ``<id>`` (an adversarial clip, its siblings towards other targets and its
  original share them).
- ``folders``: ``normal/`` and ``adversarial/`` (also ``clean``/``benign``/``original`` and
  ``adv``/``attacked``), optionally inside ``train/``, ``val/``, ``test/`` to fix the splits. A sub-folder
  of ``adversarial/`` names the attack (``adversarial/pgd/x.wav``). Clips with the same file stem share a
  group unless ``group_pattern`` says otherwise.
- ``csv``: rows ``path,label`` (header optional; paths relative to the CSV), with optional columns
  ``group`` (or ``source``, ``source_clip``, ``source_id``), ``attack`` and ``split``. Labels: ``0``/``1``,
  ``normal``/``adversarial`` and their aliases.

Every clip must lie inside the dataset's folder (the CSV's folder for ``csv``) or inside ``base_dir`` when the
user names one: a path that leads outside, by ``..``, an absolute path or a symbolic link, is an error naming
the row or file. So is a file listed twice, under both labels, or in two splits (which would leak training
clips into the test set); the message names both rows.

Audio is read with the strict policy: a clip at another rate or with several channels is refused, never
resampled, because resampling would change the perturbation the detector is meant to find.
"""

from __future__ import annotations

import csv
import logging
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from lit_app.advsets.detection import (
    ADVERSARIAL,
    DETECTION_LABELS,
    NORMAL,
    DetectionClipDataset,
    DetectionDataModule,
    balance,
)
from lit_app.audio.io import STRICT
from lit_app.paths import inside_base
from lit_app.splits import SPLITS, STAGE_SPLITS

log = logging.getLogger(__name__)

Layout = Literal["auto", "set_a", "folders", "csv"]
AUDIO_SUFFIXES = (".wav", ".flac")
NORMAL_NAMES = {"normal", "clean", "benign", "original", "genuine", "0"}
ADVERSARIAL_NAMES = {"adversarial", "adv", "attacked", "attack", "1"}
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "dev": "val", "test": "test", "testing": "test"}
GROUP_COLUMNS = ("group", "source", "source_clip", "source_id")


class DatasetLayoutError(ValueError):
    """A folder or CSV that does not hold a detection dataset in the expected layout."""


@dataclass(frozen=True)
class DetectionClip:
    """One clip of a detection dataset.

    Args:
        path: audio file.
        label: ``0`` normal, ``1`` adversarial.
        group: clips of one group always land in the same split (a source and its adversarial versions).
        attack: attack that made an adversarial clip (``""`` for normal clips).
        split: split fixed by the layout, or ``""`` to split at random by group.
        where: the CSV row or file that gave the clip, for messages.
    """

    path: Path
    label: int
    group: str
    attack: str = ""
    split: str = ""
    where: str = field(default="", compare=False)


def audio_files(folder: Path) -> list[Path]:
    """Every entry under ``folder`` with an audio suffix: also folders, pipes and broken links so named, which the
    audio reader then reports for what they are instead of their being dropped without a word."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES
                  and not any(q.suffix.lower() in AUDIO_SUFFIXES for q in p.relative_to(folder).parents if q.name))


def parse_label(value: str, where: str) -> int:
    name = value.strip().lower()
    if name in NORMAL_NAMES:
        return NORMAL
    if name in ADVERSARIAL_NAMES:
        return ADVERSARIAL
    raise DatasetLayoutError(f"{where}: label {value!r} is neither normal ({sorted(NORMAL_NAMES)}) nor "
                             f"adversarial ({sorted(ADVERSARIAL_NAMES)})")


def group_of(path: Path, root: Path, pattern: str | None, default: str) -> str:
    """The first capture group (or whole match) of ``pattern`` in the path relative to ``root``."""
    if pattern is None:
        return default
    relative = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.as_posix()
    match = re.search(pattern, relative)
    if match is None:
        raise DatasetLayoutError(f"{path}: group_pattern {pattern!r} does not match {relative!r}")
    return match.group(1) if match.groups() else match.group(0)


# ------------------------------------------------------------------------------------------------ readers
SET_A_ADVERSARIAL = re.compile(r"^adv-(short|medium|long)2(short|medium|long)-(\d+)$", re.IGNORECASE)


def read_set_a(root: str | Path, include_originals: bool = False) -> list[DetectionClip]:
    """Clips of the paper's white-box set A under ``root`` (the folder holding ``Adversarial-Examples``).

    Args:
        root: the unpacked set.
        include_originals: also serve the source clips of the adversarial examples (``Original-examples``)
            as normal clips; the published experiments used ``Normal-Examples`` only.
    """
    root = Path(root)
    adversarial_root, normal_root = root / "Adversarial-Examples", root / "Normal-Examples"
    if not adversarial_root.is_dir() or not normal_root.is_dir():
        raise DatasetLayoutError(
            f"{root}: not the set A layout (needs Adversarial-Examples/ and Normal-Examples/). "
            "Point root at the folder that holds both, or use layout: folders or csv."
        )
    clips = []
    for path in audio_files(adversarial_root):
        parts = [p.lower() for p in path.relative_to(adversarial_root).parts]
        match = SET_A_ADVERSARIAL.match(path.stem)
        if match:
            source, target, clip_id = match.groups()
            clips.append(DetectionClip(path, ADVERSARIAL, clip_id, f"cw-{source.lower()}2{target.lower()}"))
        elif "original-examples" in parts and include_originals:
            clips.append(DetectionClip(path, NORMAL, digits_of(path.stem)))
        elif "original-examples" not in parts:
            raise DatasetLayoutError(f"{path}: an adversarial file not named adv-<len>2<len>-<id>.wav")
    for path in audio_files(normal_root):
        clips.append(DetectionClip(path, NORMAL, digits_of(path.stem)))
    return clips


def digits_of(stem: str) -> str:
    """The last run of digits of a file stem (the clip id of set A), or the stem itself."""
    runs = re.findall(r"\d+", stem)
    return runs[-1] if runs else stem


def class_of_folder(name: str) -> int | None:
    name = name.lower()
    if name in NORMAL_NAMES - {"0"}:
        return NORMAL
    if name in ADVERSARIAL_NAMES - {"1"}:
        return ADVERSARIAL
    return None


def read_class_folders(root: str | Path, group_pattern: str | None = None) -> list[DetectionClip]:
    """Clips of a folder-per-class layout, optionally under ``train``/``val``/``test`` folders."""
    root = Path(root)
    split_folders = {SPLIT_NAMES[p.name.lower()]: p for p in sorted(root.iterdir()) if p.is_dir() and p.name.lower() in SPLIT_NAMES} if root.is_dir() else {}
    bases = split_folders.items() if split_folders else [("", root)]
    clips = []
    for split, base in bases:
        class_folders = [(p, class_of_folder(p.name)) for p in sorted(base.iterdir()) if p.is_dir()]
        class_folders = [(p, label) for p, label in class_folders if label is not None]
        if {label for _, label in class_folders} != {NORMAL, ADVERSARIAL}:
            raise DatasetLayoutError(
                f"{base}: needs a normal/ and an adversarial/ folder (found {[p.name for p, _ in class_folders]})."
            )
        for folder, label in class_folders:
            for path in audio_files(folder):
                inner = path.relative_to(folder).parts
                attack = (inner[0] if len(inner) > 1 else folder.name.lower()) if label == ADVERSARIAL else ""
                clips.append(DetectionClip(path, label, group_of(path, root, group_pattern, path.stem), attack, split))
    return clips


def read_csv_list(csv_path: str | Path, group_pattern: str | None = None,
                  base_dir: str | Path | None = None) -> list[DetectionClip]:
    """Clips listed in a CSV of ``path,label[,group][,attack][,split]``; paths relative to the CSV.

    Args:
        csv_path: the list.
        group_pattern: see :class:`ExternalDetectionDataModule`.
        base_dir: the folder every listed file must lie in; the CSV's folder when omitted.

    Raises:
        lit_app.paths.ListedPathError: a path leads outside ``base_dir`` (checked before the file is looked at).
        DatasetLayoutError: a malformed row.
    """
    csv_path = Path(csv_path)
    base = Path(base_dir) if base_dir is not None else csv_path.parent
    with csv_path.open(newline="") as handle:
        rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    if not rows:
        raise DatasetLayoutError(f"{csv_path}: empty CSV; expected rows of path,label")
    header = [cell.strip().lower() for cell in rows[0]]
    if "path" in header and "label" in header:
        rows = rows[1:]
    else:
        header = ["path", "label", "group", "attack", "split"][: max(len(row) for row in rows)]
    column = {name: index for index, name in enumerate(header)}
    group_column = next((column[name] for name in GROUP_COLUMNS if name in column), None)
    clips = []
    for number, row in enumerate(rows, start=2 if "path" in header else 1):
        where = f"{csv_path}:{number}"
        entry = row[column["path"]].strip()
        inside_base(base, entry, where, relative_to=csv_path.parent)
        path = Path(entry) if Path(entry).is_absolute() else csv_path.parent / entry
        label = parse_label(row[column["label"]], where)
        group = row[group_column].strip() if group_column is not None and group_column < len(row) else ""
        group = group or path.stem
        group = group_of(path, csv_path.parent, group_pattern, group)
        def cell(name: str, row: list[str] = row) -> str:
            index = column.get(name)
            return row[index].strip() if index is not None and index < len(row) else ""

        attack = cell("attack") if label == ADVERSARIAL else ""
        split = ""
        if cell("split"):
            name = cell("split").lower()
            if name not in SPLIT_NAMES:
                raise DatasetLayoutError(f"{where}: split {name!r} is not one of {sorted(SPLIT_NAMES)}")
            split = SPLIT_NAMES[name]
        clips.append(DetectionClip(path, label, group, attack, split, where))
    return clips


def read_layout(root: str | Path, layout: Layout = "auto", group_pattern: str | None = None,
                include_originals: bool = False, base_dir: str | Path | None = None) -> list[DetectionClip]:
    """Read ``root`` (a folder, or a CSV file for ``csv``) in ``layout``; ``auto`` recognises each.

    Every clip is checked to lie inside ``base_dir`` (by default the dataset folder, or the CSV's folder) and to be
    listed once, under one label and in one split.

    Raises:
        DatasetLayoutError: not the layout, or a file listed twice, under both labels or in two splits.
        lit_app.paths.ListedPathError: a clip outside ``base_dir``.
    """
    root = Path(root)
    if not root.exists():
        raise DatasetLayoutError(f"{root}: no such dataset folder or CSV file")
    if layout == "auto":
        if root.is_file():
            layout = "csv"
        elif (root / "Adversarial-Examples").is_dir():
            layout = "set_a"
        else:
            layout = "folders"
    base = Path(base_dir) if base_dir is not None else (root.parent if layout == "csv" else root)
    if layout == "csv":
        clips = read_csv_list(root, group_pattern, base)
    else:
        clips = read_set_a(root, include_originals) if layout == "set_a" else read_class_folders(root, group_pattern)
        clips = [DetectionClip(c.path, c.label, c.group, c.attack, c.split, c.where or str(c.path)) for c in clips]
        for clip in clips:  # a symbolic link in the folder may point anywhere
            inside_base(base, clip.path, clip.where)
    check_each_file_once(clips)
    return clips


def check_each_file_once(clips: list[DetectionClip]) -> None:
    """Refuse a file listed twice, under both labels, or in two fixed splits (training clips leaking into the test
    set); files are compared after following links.

    Raises:
        DatasetLayoutError: naming both rows.
    """
    first: dict[Path, DetectionClip] = {}
    for clip in clips:
        try:
            key = clip.path.resolve()
        except (OSError, RuntimeError):  # a link loop: the audio reader reports it
            key = clip.path
        earlier = first.setdefault(key, clip)
        if earlier is clip:
            continue
        if earlier.label != clip.label:
            problem = (f"is listed as {DETECTION_LABELS[earlier.label]} and as {DETECTION_LABELS[clip.label]}; a clip "
                       "has one label: remove the wrong row")
        elif earlier.split != clip.split:
            problem = (f"is listed in the {earlier.split or 'unfixed'} and the {clip.split or 'unfixed'} split, which "
                       "would leak it across splits: keep one row")
        else:
            problem = "is listed twice (duplicate rows): remove one"
        raise DatasetLayoutError(f"{earlier.where} and {clip.where}: the file {key} {problem}.")


# ---------------------------------------------------------------------------------------------- splitting
def split_by_group(
    clips: Iterable[DetectionClip], fractions: tuple[float, float, float] = (0.7, 0.1, 0.2), seed: int = 42
) -> dict[str, list[DetectionClip]]:
    """Assign clips to train/val/test so that no group straddles splits.

    Clips whose layout fixes the split keep it. The others are split by group, separately for groups of
    normal clips only, adversarial clips only and both, so each split keeps the class mix; groups are
    shuffled with ``seed`` and handed out until each split holds its fraction of that stratum's clips.
    """
    if len(fractions) != 3 or min(fractions) < 0 or sum(fractions) <= 0:
        raise ValueError(f"split fractions must be three non-negative numbers, got {fractions}")
    splits: dict[str, list[DetectionClip]] = {name: [] for name in SPLITS}
    groups: dict[str, list[DetectionClip]] = defaultdict(list)
    for clip in clips:
        if clip.split:
            splits[clip.split].append(clip)
        else:
            groups[clip.group].append(clip)
    strata: dict[tuple[int, ...], list[str]] = defaultdict(list)
    for name, members in groups.items():
        strata[tuple(sorted({c.label for c in members}))].append(name)
    total = sum(fractions)
    rng = random.Random(seed)
    for stratum in sorted(strata):
        names = sorted(strata[stratum])
        rng.shuffle(names)
        size = sum(len(groups[n]) for n in names)
        targets = np.cumsum([f / total * size for f in fractions])
        given = 0
        for name in names:
            # the first split whose cumulative target is not yet reached takes the group
            index = next((i for i, t in enumerate(targets) if given < t - 1e-9), 2)
            splits[SPLITS[index]].extend(groups[name])
            given += len(groups[name])
    return splits


# ------------------------------------------------------------------------------------------------ serving
class ExternalDetectionDataModule(DetectionDataModule):
    """Normal and adversarial clips from a dataset on disk, split by group, as detection batches.

    Args:
        root: the dataset folder (``set_a``, ``folders``) or CSV file (``csv``).
        base_dir: the folder every clip must lie in, when it is not ``root`` (or the CSV's folder): name it to
            use a CSV that lists clips elsewhere, or class folders holding links to clips elsewhere.
        layout: ``auto`` (CSV file, set A, else class folders), ``set_a``, ``folders`` or ``csv``.
        group_pattern: regular expression on the path relative to the root whose first capture group
            names a clip's group (e.g. ``r"(\\d+)\\.wav$"``); by default the layout's own pairing.
        attacks: keep only adversarial clips of these attacks (sub-folder names, CSV ``attack`` column).
        include_originals: set A only: also serve the sources of the adversarial clips as normal clips.
        split_fractions: train, validation and test shares for clips whose layout fixes no split.
        balance: drop random clips of the larger class in each split so both classes are equal (the kept clips
            keep their listing order).
        max_seconds: crop longer clips to this length (bounds memory on long utterances); clips are served
            whole when omitted.
        batch_size: clips per batch.
        cache: keep the clips in memory as int16 after one validating read.
        skip_bad_files: skip (and list) unreadable or invalid clips instead of stopping.
        seed: seed of the split and of the balancing.
        num_workers: DataLoader worker processes.
    """

    def __init__(
        self,
        root: str,
        base_dir: str | None = None,
        layout: Layout = "auto",
        group_pattern: str | None = None,
        attacks: list[str] | None = None,
        include_originals: bool = False,
        split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
        balance: bool = False,
        max_seconds: float | None = None,
        batch_size: int = 32,
        cache: bool = True,
        skip_bad_files: bool = False,
        seed: int = 42,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers)
        self.root = Path(root)
        self.base_dir = Path(base_dir) if base_dir is not None else None
        self.layout = layout
        self.group_pattern = group_pattern
        self.attacks = list(attacks) if attacks else None
        self.include_originals = include_originals
        self.split_fractions = tuple(split_fractions)
        self.balance = balance
        self.max_samples = int(max_seconds * STRICT.sample_rate) if max_seconds else None
        self.cache = cache
        self.skip_bad_files = skip_bad_files
        self.seed = seed
        self.clips: dict[str, list[DetectionClip]] = {}

    def split_clips(self) -> dict[str, list[DetectionClip]]:
        """The clips of each split (read, filtered, split and balanced; no audio is loaded)."""
        if not self.clips:
            clips = read_layout(self.root, self.layout, self.group_pattern, self.include_originals, self.base_dir)
            if self.attacks is not None:
                found = {c.attack for c in clips if c.label == ADVERSARIAL}
                missing = set(self.attacks) - found
                if missing:
                    raise DatasetLayoutError(f"{self.root}: no adversarial clips of attacks {sorted(missing)}; "
                                             f"the dataset has {sorted(found)}")
                clips = [c for c in clips if c.label == NORMAL or c.attack in self.attacks]
            splits = split_by_group(clips, self.split_fractions, self.seed)
            if self.balance:
                splits = {name: balance(members, random.Random(f"{self.seed}-{name}"), lambda c: c.label)
                          for name, members in splits.items()}
            self.clips = splits
            counts = {name: dict(Counter(DETECTION_LABELS[c.label] for c in members)) for name, members in splits.items()}
            log.info("%s: %s", self.root, counts)
        return self.clips

    def setup(self, stage: str) -> None:
        wanted = STAGE_SPLITS[stage]
        for split in wanted:
            if split in self.datasets:
                continue
            clips = self.split_clips()[split]
            if not clips:
                raise DatasetLayoutError(f"{self.root}: the {split} split is empty; add clips or change split_fractions")
            dataset = DetectionClipDataset([(c.path, c.label) for c in clips], STRICT, self.max_samples, self.cache,
                                           self.skip_bad_files)
            if dataset.skipped:
                log.warning("skipped %d bad clips in %s:\n  %s", len(dataset.skipped), self.root, "\n  ".join(dataset.skipped))
            self.datasets[split] = dataset

