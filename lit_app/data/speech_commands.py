"""Reader for the Google Speech Commands folder layout (v0.01 and v0.02, real or synthetic).

Layout: one folder per word of 1 s WAVs named ``<speaker>_nohash_<n>.wav``; ``validation_list.txt`` and
``testing_list.txt`` list the validation and test files (everything else is training);
``_background_noise_/`` holds long noise recordings. The official test-set archive also has ``_silence_``
and ``_unknown_`` folders; they are read as those labels.

A file the lists put in both the validation and the test split, or list twice, is an error naming both lines;
so is a clip that is a link to a file outside the corpus folder. Clips longer than 1 s are cut to their first
second with a warning that names them (the keyword models take 1 s).
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from lit_app.audio.io import AudioError, AudioPolicy, read_audio
from lit_app.audio.pcm import float_to_pcm16
from lit_app.data.vocab import BACKGROUND_NOISE_FOLDER, SILENCE, UNKNOWN, Task, task_labels
from lit_app.paths import ListedPathError, inside_base
from lit_app.splits import SPEECH_COMMANDS_SPLITS as SPLITS

log = logging.getLogger(__name__)

CLIP_SAMPLES = 16000


@dataclass(frozen=True)
class Clip:
    path: str  # relative to the corpus root, e.g. "yes/0a7c2a8d_nohash_0.wav"
    word: str

    @property
    def speaker(self) -> str:
        return Path(self.path).name.split("_nohash_")[0]


def read_split_lists(root: Path) -> dict[str, set[str]]:
    """The files ``validation_list.txt`` and ``testing_list.txt`` name, each file in one list once.

    Raises:
        FileNotFoundError: a list is missing.
        lit_app.paths.ListedPathError: a file listed twice or in both lists.
    """
    lists: dict[str, set[str]] = {}
    first: dict[str, str] = {}
    for split, name in (("validation", "validation_list.txt"), ("testing", "testing_list.txt")):
        listing = root / name
        if not listing.is_file():
            raise FileNotFoundError(
                f"{listing}: missing. {root} is not a complete Speech Commands folder; a synthetic corpus "
                "writes this file when its build finishes, so rerun the build."
            )
        lists[split] = set()
        for number, line in enumerate(listing.read_text().splitlines(), start=1):
            entry = line.strip()
            if not entry:
                continue
            if entry in first:
                problem = ("is listed twice" if entry in lists[split]
                           else "is in both the validation and the test list, so it would leak between them")
                raise ListedPathError(f"{first[entry]} and {listing}:{number}: {entry} {problem}; keep one line.")
            first[entry] = f"{listing}:{number}"
            lists[split].add(entry)
    return lists


def scan(root: str | Path) -> dict[str, list[Clip]]:
    """Every clip of the corpus, by split, in a stable order.

    Raises:
        FileNotFoundError: ``root`` is missing or is not in the Speech Commands layout.
        lit_app.paths.ListedPathError: a file listed twice or in both lists, or a clip linking outside ``root``.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"{root}: no such folder. Point the data module at a Speech Commands copy (v0.01/v0.02), "
            "or give it a `synthesize` section to build the synthetic corpus there."
        )
    lists = read_split_lists(root)
    splits: dict[str, list[Clip]] = {split: [] for split in SPLITS}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name != BACKGROUND_NOISE_FOLDER):
        if folder.name.startswith(".") or (folder.name.startswith("_") and folder.name not in (SILENCE, UNKNOWN)):
            continue
        for wav in sorted(folder.glob("*.wav")):
            relative = f"{folder.name}/{wav.name}"
            if wav.is_symlink():  # a link may point anywhere; plain files are inside by construction
                inside_base(root, relative, f"{wav} (a link)")
            split = next((s for s in ("validation", "testing") if relative in lists[s]), "train")
            splits[split].append(Clip(relative, folder.name))
    if not any(splits.values()):
        raise FileNotFoundError(f"{root}: no word folders with .wav files; is this a Speech Commands folder?")
    return splits


def select_for_task(clips: list[Clip], task: Task, unknown_percentage: float, rng: random.Random) -> list[tuple[Clip, int]]:
    """Pair clips with label indices. ``keywords12`` maps other words to ``_unknown_`` and keeps
    ``unknown_percentage`` percent of the keyword count of them (as TensorFlow's example does)."""
    labels = task_labels(task)
    index = {label: i for i, label in enumerate(labels)}
    if task == "words35":
        left_out = Counter(clip.word for clip in clips if clip.word not in index)
        if left_out:
            log.warning("task words35 serves the 35 Speech Commands words only; left out %d clips of other folders "
                        "(%s). Remove those folders, or use task keywords12 to serve them as _unknown_.",
                        sum(left_out.values()), ", ".join(f"{w}: {n}" for w, n in sorted(left_out.items())))
        return [(clip, index[clip.word]) for clip in clips if clip.word in index]
    known = [(clip, index[clip.word]) for clip in clips if clip.word in index]
    unknown = [clip for clip in clips if clip.word not in index]
    rng.shuffle(unknown)
    keep = min(len(unknown), round(len(known) * unknown_percentage / 100))
    return known + [(clip, index[UNKNOWN]) for clip in unknown[:keep]]


def load_clips(
    root: Path, clips: list[Clip], policy: AudioPolicy, skip_bad: bool, num_threads: int = 4
) -> tuple[torch.Tensor, list[int], list[str]]:
    """Read clips into an int16 ``[n, 16000]`` tensor (shorter clips zero-padded, longer ones cut to their first
    second with a warning naming them).

    Returns the tensor, the indices of the clips that were read, and messages for skipped files.

    Raises:
        AudioError: a clip is bad and ``skip_bad`` is false; the message names the file.
    """

    def read(clip: Clip) -> torch.Tensor | AudioError:
        try:
            return read_audio(root / clip.path, policy)
        except AudioError as err:
            if not skip_bad:
                raise
            return err

    with ThreadPoolExecutor(num_threads) as pool:
        results = list(pool.map(read, clips))
    kept = [i for i, r in enumerate(results) if not isinstance(r, AudioError)]
    skipped = [str(r) for r in results if isinstance(r, AudioError)]
    long = [(clips[i].path, results[i].numel() / CLIP_SAMPLES) for i in kept if results[i].numel() > CLIP_SAMPLES]
    if long:
        log.warning("%s: %d clips are longer than 1 s and were cut to their first second (the keyword models take "
                    "1 s clips), e.g. %s. Trim them to the word if it is not at the start.", root, len(long),
                    ", ".join(f"{path} ({seconds:.1f} s)" for path, seconds in long[:3]))
    audio = torch.zeros(len(kept), CLIP_SAMPLES, dtype=torch.int16)
    for row, i in enumerate(kept):
        wave = results[i][:CLIP_SAMPLES]
        audio[row, : wave.numel()] = float_to_pcm16(wave)
    return audio, kept, skipped


def load_background_noise(root: Path, policy: AudioPolicy) -> list[torch.Tensor]:
    folder = root / BACKGROUND_NOISE_FOLDER
    if not folder.is_dir():
        return []
    return [read_audio(path, policy) for path in sorted(folder.glob("*.wav"))]


def silence_clips(noises: list[torch.Tensor], count: int, rng: random.Random, max_volume: float = 0.3) -> torch.Tensor:
    """``count`` int16 clips of background noise at random volumes (digital silence without noise files)."""
    audio = torch.zeros(count, CLIP_SAMPLES, dtype=torch.int16)
    if not noises:
        return audio
    for row in range(count):
        noise = noises[rng.randrange(len(noises))]
        start = rng.randrange(max(noise.numel() - CLIP_SAMPLES, 1))
        segment = noise[start : start + CLIP_SAMPLES] * rng.uniform(0.0, max_volume)
        audio[row, : segment.numel()] = float_to_pcm16(segment)
    return audio
