"""A corpus of bad audio inputs, generated in the test that uses it: one file (or thing named like one) per kind."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 16000

#: kind -> the words every reader's message must contain for it. ``nan`` is found by decoding only, so header-level
#: readers (durations) pass it; ``long`` is a valid clip that a 1 s reader must not cut without a word.
MESSAGES = {
    "truncated": "truncated WAV",
    "header_then_noise": "truncated WAV",
    "link_loop": "symbolic-link loop",
    "broken_link": "symbolic link to",
    "fifo": "named pipe (FIFO)",
    "folder": "a folder, not an audio file",
    "missing": "no such audio file",
    "not_audio": "unreadable audio",
    "empty": "empty audio",
    "nan": "NaN or Inf",
}
HEADER_LEVEL = [kind for kind in MESSAGES if kind != "nan"]


def good_clip(path: Path, seconds: float = 1.0, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sf.write(str(path), (rng.standard_normal(int(seconds * RATE)) * 3000).astype(np.int16), RATE, subtype="PCM_16")
    return path


def write_bad(folder: Path, kind: str, name: str | None = None) -> Path:
    """Make the bad input ``kind`` as ``folder/<name or kind>.wav``; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name or kind}.wav"
    whole = good_clip(folder / f".whole-{path.stem}.tmp.wav").read_bytes()
    (folder / f".whole-{path.stem}.tmp.wav").unlink()
    if kind == "truncated":  # a copy cut short: libsndfile would read it as a shorter clip
        path.write_bytes(whole[: len(whole) // 2])
    elif kind == "header_then_noise":  # a valid header, then a few random bytes
        path.write_bytes(whole[:44] + np.random.default_rng(1).bytes(7))
    elif kind == "link_loop":
        path.symlink_to(path.name)
    elif kind == "broken_link":
        path.symlink_to(folder / "gone.wav")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "missing":
        pass
    elif kind == "not_audio":
        path.write_bytes(b"this is a text file, not audio\n" * 20)
    elif kind == "empty":
        sf.write(str(path), np.zeros(0, dtype=np.int16), RATE, subtype="PCM_16")
    elif kind == "nan":
        wave = np.zeros(RATE, dtype=np.float32)
        wave[100] = np.nan
        sf.write(str(path), wave, RATE, subtype="FLOAT")
    elif kind == "long":
        good_clip(path, seconds=3.0)
    else:
        raise ValueError(kind)
    return path
