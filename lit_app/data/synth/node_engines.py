"""Two rule-driven synthesisers from npm, as engines ``gnuspeech`` and ``sam`` (ours, issue 25).

GnuSpeech synthesises speech with a model of the vocal tract as a tube (articulatory synthesis), SAM (the Software
Automatic Mouth, 1982) with formant rules: neither is a recording of anyone, as espeak-ng's own voices are not. Both
run in Node.js (``node/tts_server.mjs``); ``LIT_APP_MORE_VOICES=1 bash scripts/setup.sh`` installs them (Debian's
``nodejs``, then the pinned packages of ``node/package.json``).

Each engine has a handful of voices of its own; the rest of ours are drawn from its parameters by a seed that is
the voice's name, so a voice speaks the same on every machine. GnuSpeech: the package's four voices (a man, a
woman, a large and a small child), and variants of each with another vocal-tract length, tube shape (each of its
eight sections wider or narrower by up to 10%), glottal pulse, breathiness and pitch. SAM: its manual's six voices
(speed, pitch, throat, mouth) and voices drawn from the ranges they span.
"""

from __future__ import annotations

import io
import random
import shutil
from functools import cache
from pathlib import Path

import numpy as np
import soundfile as sf

from lit_app.data.synth.errors import TTSError
from lit_app.data.synth.server_process import ServerProcess

NODE_FOLDER = Path(__file__).with_name("node")
GNUSPEECH_DATA = NODE_FOLDER / "node_modules" / "@echogarden" / "gnuspeech-wasm" / "data" / "en"
GNUSPEECH_BASE_VOICES = ("male", "female", "large_child", "small_child")
GNUSPEECH_VARIANTS = 8  # per base voice, the first as shipped
#: SAM's voices from its manual: speed, pitch, throat, mouth.
SAM_PRESETS = {
    "sam": (72, 64, 128, 128),
    "elf": (72, 64, 110, 160),
    "little_robot": (92, 60, 190, 190),
    "stuffy_guy": (82, 72, 110, 105),
    "little_old_lady": (82, 32, 145, 145),
    "extra_terrestrial": (100, 64, 150, 200),
}
SAM_DRAWN_VOICES = 18
INSTALL = "`LIT_APP_MORE_VOICES=1 bash scripts/setup.sh` (Node.js and the packages of lit_app/data/synth/node)"


def node_engines_available() -> bool:
    """Node.js and the npm packages are installed."""
    return shutil.which("node") is not None and GNUSPEECH_DATA.is_dir() and (NODE_FOLDER / "node_modules" / "sam-js").is_dir()


def node_engines_missing(engine: str) -> TTSError:
    """The error for ``engine`` (``gnuspeech`` or ``sam``) where Node.js or the packages are not installed."""
    return TTSError(f"{engine} is not installed. Install it with {INSTALL}, or drop {engine!r} from engines.")


def gnuspeech_voices() -> tuple[str, ...]:
    return tuple(f"{base}-{k}" for base in GNUSPEECH_BASE_VOICES for k in range(GNUSPEECH_VARIANTS))


def sam_voices() -> tuple[str, ...]:
    return (*SAM_PRESETS, *(f"drawn-{k:02d}" for k in range(1, SAM_DRAWN_VOICES + 1)))


@cache
def gnuspeech_base_voice(base: str) -> dict[str, float]:
    """The package's voice file of ``base`` as settings."""
    settings = {}
    for line in (GNUSPEECH_DATA / f"voice_{base}.txt").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            settings[key.strip()] = float(value)
    return settings


def gnuspeech_voice(name: str) -> tuple[dict[str, float], dict[str, float]]:
    """The voice file's settings and the control model's of a GnuSpeech voice ``<base>-<k>``."""
    base, k = name.rsplit("-", 1)
    if base not in GNUSPEECH_BASE_VOICES or not k.isdigit() or int(k) >= GNUSPEECH_VARIANTS:
        raise TTSError(f"GnuSpeech has no voice {name!r} (ours: {', '.join(gnuspeech_voices())})")
    voice = dict(gnuspeech_base_voice(base))
    # Random intonation and pitch drift would make every clip differ each time it is made.
    control = {"random_intonation": 0, "intonation_drift": 0}
    if int(k) > 0:
        rng = random.Random(f"gnuspeech:{name}")
        voice["vocal_tract_length"] = round(voice["vocal_tract_length"] * rng.uniform(0.92, 1.08), 3)
        voice["reference_glottal_pitch"] = round(voice["reference_glottal_pitch"] + rng.uniform(-3.0, 3.0), 2)
        voice["breathiness"] = round(rng.uniform(0.5, 3.0), 2)
        voice["glottal_pulse_tp"] = round(rng.uniform(30.0, 50.0), 1)
        closing = round(voice["glottal_pulse_tn_min"] * rng.uniform(0.8, 1.2), 1)
        voice["glottal_pulse_tn_min"] = voice["glottal_pulse_tn_max"] = closing
        for section in range(1, 9):
            voice[f"radius_{section}_coef"] = round(rng.uniform(0.9, 1.1), 3)
        control["pitch_offset"] = round(-4.0 + rng.uniform(-2.0, 2.0), 2)
    return voice, control


def sam_voice(name: str) -> dict[str, int]:
    """SAM's settings of a voice of :func:`sam_voices`."""
    if name in SAM_PRESETS:
        speed, pitch, throat, mouth = SAM_PRESETS[name]
    elif name in sam_voices():
        rng = random.Random(f"sam:{name}")
        speed, pitch = rng.randint(72, 92), rng.randint(32, 80)
        throat, mouth = rng.randint(110, 190), rng.randint(105, 200)
    else:
        raise TTSError(f"SAM has no voice {name!r} (ours: {', '.join(sam_voices())})")
    return {"speed": speed, "pitch": pitch, "throat": throat, "mouth": mouth}


class NodeEngine(ServerProcess):
    """GnuSpeech and SAM through one Node.js process (``node/tts_server.mjs``), which stays up between utterances.

    Args:
        engine: the engine first asked for (named in the error where Node.js or the packages are missing).
    """

    def __init__(self, engine: str = "gnuspeech") -> None:
        if not node_engines_available():
            raise node_engines_missing(engine)
        self.start(["node", str(NODE_FOLDER / "tts_server.mjs")])
        header = self.process.stdout.read(4)
        if len(header) < 4:
            raise TTSError(f"the Node.js speech server did not start ({self.last_error('no message')}); reinstall "
                           f"with {INSTALL}")

    def synthesise(self, engine: str, text: str, voice: str, duration_stretch: float = 1.0) -> tuple[np.ndarray, int]:
        """Speak ``text`` with ``engine``'s ``voice``; returns int16 samples and their sample rate."""
        if engine == "gnuspeech":
            settings, control = gnuspeech_voice(voice)
            request = {"voice": settings, "control": {**control, "tempo": round(1.0 / duration_stretch, 4)}}
        elif engine == "sam":
            settings = sam_voice(voice)
            request = {"voice": {**settings, "speed": round(settings["speed"] * duration_stretch)}}
        else:
            raise TTSError(f"unknown Node.js engine {engine!r}")
        payload = self.ask({"engine": engine, "text": text, **request},
                           died=f"the Node.js speech server died while {engine} spoke {text!r} with voice {voice!r}",
                           failed=f"{engine} for {text!r} with voice {voice!r} failed: ")
        return sf.read(io.BytesIO(payload), dtype="int16")
