"""Reading, checking and writing audio files with soundfile.

Every failure raises :class:`AudioError`, whose message names the file and says what to do about it, so a
bad clip in a dataset folder surfaces as one readable line instead of a crash inside a collate function.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from lit_app.audio.pcm import to_pcm16

SAMPLE_RATE = 16000


class AudioError(ValueError):
    """An audio file that cannot be used as it is. The message names the file and the fix."""


@dataclass(frozen=True)
class AudioPolicy:
    """What to do with audio that is readable but not in the expected format.

    Args:
        sample_rate: the rate every clip must have after loading.
        on_wrong_rate: ``"resample"`` converts with torchaudio; ``"error"`` refuses the file (use it for
            adversarial clips, whose perturbation a resampler would change).
        on_multichannel: ``"downmix"`` averages the channels; ``"error"`` refuses the file.
        allow_clipping: accept floating-point files with samples beyond full scale (|x| > 1).
    """

    sample_rate: int = SAMPLE_RATE
    on_wrong_rate: Literal["resample", "error"] = "resample"
    on_multichannel: Literal["downmix", "error"] = "downmix"
    allow_clipping: bool = False


STRICT = AudioPolicy(on_wrong_rate="error", on_multichannel="error")


def require_regular_file(path: Path) -> None:
    """Refuse anything but an existing regular file (or a link to one), saying what ``path`` really is.

    Raises:
        AudioError: missing, a broken link, a link loop, a folder, a FIFO, a device or a socket.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if path.is_symlink():
            raise AudioError(f"{path}: a symbolic link to {os.readlink(path)!r}, which does not exist. Restore the "
                             "target or delete the link.") from None
        raise AudioError(f"{path}: no such audio file. Check the path, or rebuild the dataset that lists it.") from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise AudioError(f"{path}: a symbolic-link loop (the link leads back to itself). Replace it with the "
                             "audio file or delete it.") from None
        raise AudioError(f"{path}: cannot be opened ({err.strerror}). Check its permissions.") from None
    if stat.S_ISREG(mode):
        return
    what = ("a folder" if stat.S_ISDIR(mode) else "a named pipe (FIFO)" if stat.S_ISFIFO(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "a device file")
    raise AudioError(f"{path}: {what}, not an audio file. Move it out of the dataset (or rename it so that it does "
                     "not end in an audio extension).")


def wav_shortfall(path: Path) -> tuple[int, int] | None:
    """``(promised, present)`` bytes of audio when a WAV file's data chunk is shorter than its header says.

    libsndfile reads such a file as a shorter clip without complaint; a cut-short copy or a valid header
    followed by a few stray bytes is thereby caught. ``None`` for whole files and for files that are not WAV
    (or whose writer left the size open, as streaming writers do).
    """
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return None
        order = "<" if head[:4] == b"RIFF" else ">"
        position = 12
        while position + 8 <= size:
            handle.seek(position)
            chunk_id, length = struct.unpack(f"{order}4sI", handle.read(8))
            if chunk_id == b"data":
                present = size - position - 8
                if length in (0, 0xFFFFFFFF) or present >= length:
                    return None
                return length, present
            position += 8 + length + (length & 1)
    return None


def check_complete(path: Path, frames_read: int | None = None) -> None:
    """Refuse a file whose audio is shorter than its header says (WAV: data chunk size; FLAC: total samples).

    Raises:
        AudioError: the file was cut short.
    """
    short = wav_shortfall(path)
    if short is not None:
        raise AudioError(
            f"{path}: truncated WAV: the header promises {short[0]} bytes of audio but only {short[1]} follow (a "
            "copy or write was cut short, or stray bytes follow a header). Replace the file or regenerate it."
        )
    if frames_read is not None and path.suffix.lower() == ".flac":
        promised = sf.info(str(path)).frames
        if 0 < frames_read < promised:
            raise AudioError(f"{path}: truncated FLAC: the header promises {promised} samples but only {frames_read} "
                             "could be decoded. Replace the file or regenerate it.")


def read_audio(path: str | os.PathLike, policy: AudioPolicy = AudioPolicy()) -> torch.Tensor:
    """Read a file into a mono float32 tensor in [-1, 1] at ``policy.sample_rate``.

    Raises:
        AudioError: the file is missing or not a regular file, unreadable, cut short, empty, holds NaN/Inf, is
            clipped beyond full scale, or breaks ``policy``.
    """
    path = Path(path)
    require_regular_file(path)
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises several types (LibsndfileError, RuntimeError, TypeError)
        raise AudioError(
            f"{path}: unreadable audio ({err}). The file is corrupt or not an audio format libsndfile reads; "
            "delete or replace it (or regenerate the dataset)."
        ) from err
    check_complete(path, data.shape[0])
    return check_audio(torch.from_numpy(data.T.copy()), rate, path, policy)


def check_audio(
    waveform: torch.Tensor, rate: int, name: str | os.PathLike, policy: AudioPolicy = AudioPolicy()
) -> torch.Tensor:
    """Validate and normalise a ``[channels, time]`` waveform; ``name`` is used in error messages."""
    if waveform.ndim == 1:
        waveform = waveform.unsqueeze(0)
    if waveform.numel() == 0:
        raise AudioError(f"{name}: empty audio (no samples). Delete the file or regenerate it.")
    if not torch.isfinite(waveform).all():
        raise AudioError(f"{name}: audio holds NaN or Inf samples. Delete the file or regenerate it.")
    peak = waveform.abs().max().item()
    if peak > 1.0 + 1e-6 and not policy.allow_clipping:
        raise AudioError(
            f"{name}: samples reach {peak:.3f}, beyond full scale (1.0). Rescale the file, or set "
            "allow_clipping=True to accept it."
        )
    if waveform.shape[0] > 1:
        if policy.on_multichannel == "error":
            raise AudioError(
                f"{name}: {waveform.shape[0]} channels, expected mono. Convert it (e.g. `sox in.wav -c 1 out.wav`) "
                "or use on_multichannel='downmix'."
            )
        waveform = waveform.mean(dim=0, keepdim=True)
    if rate != policy.sample_rate:
        if policy.on_wrong_rate == "error":
            raise AudioError(
                f"{name}: sample rate {rate} Hz, expected {policy.sample_rate} Hz. Resample it "
                f"(e.g. `sox in.wav -r {policy.sample_rate} out.wav`) or use on_wrong_rate='resample'."
            )
        waveform = AF.resample(waveform, rate, policy.sample_rate)
    return waveform[0].contiguous()


def write_wav(path: str | os.PathLike, waveform: torch.Tensor | np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write a mono clip as 16-bit PCM WAV, atomically: a reader never sees a half-written file."""
    path = Path(path)
    samples = waveform if isinstance(waveform, np.ndarray) and waveform.dtype == np.int16 else to_pcm16(waveform)
    if samples.ndim != 1 or samples.size == 0:
        raise AudioError(f"{path}: refusing to write {samples.shape} samples; expected a non-empty mono clip.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            sf.write(handle, samples, sample_rate, subtype="PCM_16", format="WAV")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
