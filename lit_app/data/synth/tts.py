"""Offline text-to-speech engines and their voice catalogue.

espeak-ng always works (its library and voice data come with the ``espeakng-loader`` wheel); flite adds
voices when the Debian ``flite`` program is installed. Festival (Debian ``festival`` and its ``festvox-*`` voices)
is a third engine, used only where a corpus lists it: the default corpora were built from espeak-ng and flite,
and a festival installed later must not change them. ``festival_accented`` is festival's voices of other
languages reading respelled English words (``accents.py``): keyword corpora only, and never heard by a victim
that holds festival out (:data:`ENGINE_FAMILY`). More speakers, also only where a corpus lists them
(``LIT_APP_MORE_VOICES=1 bash scripts/setup.sh`` installs them; Debian's non-free section): ``festival_extra``
(festival's other English voices: two diphone voices and three MBROLA ones), ``pico`` (SVOX Pico, two voices),
``rhvoice`` (RHVoice, six English voices), and ours, ``mbrola_accented`` (MBROLA's voices of other languages
reading English, ``mbrola.py``) and ``mbrola_british`` (the same speakers through a British front end), and two
synthesisers from npm, ``gnuspeech`` and ``sam`` (``node_engines.py``; voices drawn from their parameters, ours). A
:class:`Voice` is one speaker identity: the unit that corpora split on, so test voices are never heard in training.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import soundfile as sf

from lit_app.data.synth.accents import ACCENTED_VOICES, festival_request
from lit_app.data.synth.errors import TTSError
from lit_app.data.synth.mbrola import (
    FEMALE_PITCH_RATIO,
    FRONT_ENDS,
    MBROLA_ACCENTED_VOICES,
    accented_pho,
    database,
    mbrola_voices,
)
from lit_app.data.synth.node_engines import (
    NodeEngine,
    gnuspeech_voices,
    node_engines_available,
    node_engines_missing,
    sam_voices,
)
from lit_app.data.synth.server_process import ServerProcess

ESPEAK_ACCENTS = (
    "en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029", "en-us-nyc",
)
FLITE_VOICES = ("kal16", "awb", "rms", "slt")
#: Festival's English voices in Debian, and the package of each.
FESTIVAL_VOICES = {
    "cmu_us_slt_arctic_hts": "festvox-us-slt-hts",
    "kal_diphone": "festvox-kallpc16k",
    "ked_diphone": "festvox-kdlpc16k",
}
#: Festival's other English voices in Debian (MBROLA's en1 is left out: it may be rab's speaker again).
FESTIVAL_EXTRA_VOICES = {
    "rab_diphone": "festvox-rablpc16k",
    "don_diphone": "festvox-don",
    "us1_mbrola": "festvox-us1",
    "us2_mbrola": "festvox-us2",
    "us3_mbrola": "festvox-us3",
}
#: Each festival engine's voices and the Debian package of each.
FESTIVAL_PACKAGES = {
    "festival": FESTIVAL_VOICES,
    "festival_accented": {voice: package for voice, (package, _) in ACCENTED_VOICES.items()},
    "festival_extra": FESTIVAL_EXTRA_VOICES,
}
#: SVOX Pico's English voices (Debian ``libttspico-utils``), by language tag.
PICO_VOICES = ("en-GB", "en-US")
#: RHVoice's English voices (Debian ``rhvoice-english``); evgeniy-eng and lyubov are Russian speakers of English.
RHVOICE_VOICES = ("alan", "bdl", "clb", "evgeniy-eng", "lyubov", "slt")
RHVOICE_VOICE_FOLDER = Path("/usr/share/RHVoice/voices")
#: The Debian packages of the engines that ``LIT_APP_MORE_VOICES=1 bash scripts/setup.sh`` installs.
MORE_VOICES_PACKAGES = {
    "festival_extra": ("festival", *FESTIVAL_EXTRA_VOICES.values()),
    "pico": ("libttspico-utils",),
    "rhvoice": ("rhvoice", "rhvoice-english"),
    "mbrola_accented": ("festival", "festvox-kallpc16k", "mbrola", *(f"mbrola-{name}" for name in MBROLA_ACCENTED_VOICES)),
    "mbrola_british": ("festival", "festvox-rablpc16k", "mbrola", *(f"mbrola-{name}" for name in MBROLA_ACCENTED_VOICES)),
}
FESTIVAL_VOICE_FOLDER = Path("/usr/share/festival/voices")
#: Recorded speakers whom more than one engine speaks with (flite's and festival's voices of Kevin Lenzo and of the
#: SLT Arctic speaker): a speaker's voices share a split, so that test voices are unseen speakers.
#: RHVoice's slt and alan are built from the CMU Arctic recordings of slt and of awb, as flite's are.
SHARED_SPEAKERS = {"flite:kal16": "kal", "festival:kal_diphone": "kal", "flite:slt": "slt",
                   "festival:cmu_us_slt_arctic_hts": "slt", "rhvoice:slt": "slt", "flite:awb": "awb",
                   "rhvoice:alan": "awb"}
#: Engines whose voices are another engine's speakers (MBROLA's, through another front end): a voice of one is the
#: same speaker as the other's voice of that name.
SAME_SPEAKERS_AS = {"mbrola_british": "mbrola_accented"}
#: The program behind each engine: holding an engine out holds out every engine of its program.
#: MBROLA's accented voices speak what festival's front end says (``mbrola.py``): festival's family.
ENGINE_FAMILY = {"espeak": "espeak", "flite": "flite", "festival": "festival", "festival_accented": "festival",
                 "festival_extra": "festival", "pico": "pico", "rhvoice": "rhvoice", "mbrola_accented": "festival",
                 "mbrola_british": "festival", "gnuspeech": "gnuspeech", "sam": "sam"}
ENGINES = tuple(ENGINE_FAMILY)


@dataclass(frozen=True, order=True)
class Voice:
    """One synthetic speaker: an engine and that engine's voice name (espeak-ng: ``accent+variant``)."""

    engine: str
    name: str

    @property
    def id(self) -> str:
        return f"{self.engine}:{self.name}"

    @property
    def speaker(self) -> str:
        """Who speaks: the voice's id, or the name of a speaker that several engines have (:data:`SHARED_SPEAKERS`,
        :data:`SAME_SPEAKERS_AS`)."""
        if self.engine in SAME_SPEAKERS_AS:
            return Voice(SAME_SPEAKERS_AS[self.engine], self.name).speaker
        return SHARED_SPEAKERS.get(self.id, self.id)

    @property
    def short_hash(self) -> str:
        """Eight hex digits, used like a Speech Commands speaker id in file names."""
        return hashlib.sha1(self.id.encode()).hexdigest()[:8]


@cache
def espeak_variants() -> tuple[str, ...]:
    """Voice variants (``m1``, ``f3``, ``klatt``, ``whisper``...) shipped with the bundled espeak-ng data."""
    import espeakng_loader

    folder = Path(espeakng_loader.get_data_path()) / "voices" / "!v"
    return tuple(sorted(p.name for p in folder.iterdir() if p.is_file() and " " not in p.name))


def flite_available() -> bool:
    return shutil.which("flite") is not None


def festival_voices(engine: str = "festival") -> tuple[str, ...]:
    """The voices of a festival ``engine`` (:data:`FESTIVAL_PACKAGES`) installed here (none without the ``festival``
    program)."""
    if shutil.which("festival") is None:
        return ()
    return tuple(name for name in FESTIVAL_PACKAGES[engine] if any(FESTIVAL_VOICE_FOLDER.glob(f"*/{name}")))


def pico_available() -> bool:
    return shutil.which("pico2wave") is not None


def rhvoice_voices() -> tuple[str, ...]:
    """RHVoice's English voices installed here (none without the ``RHVoice-test`` program)."""
    if shutil.which("RHVoice-test") is None:
        return ()
    return tuple(name for name in RHVOICE_VOICES if (RHVOICE_VOICE_FOLDER / name).is_dir())


def missing_engine(engine: str, what: str) -> TTSError:
    """The error for a festival engine or one of :data:`MORE_VOICES_PACKAGES` that is not (wholly) installed here,
    naming the command that installs it."""
    if engine in MORE_VOICES_PACKAGES:
        packages = " ".join(MORE_VOICES_PACKAGES[engine])
        how = (f"with `LIT_APP_MORE_VOICES=1 bash scripts/setup.sh` (or `apt-get install {packages}` from Debian's "
               "non-free section)")
    else:
        how = f"(`apt-get install festival {' '.join(FESTIVAL_PACKAGES[engine].values())}`)"
    return TTSError(f"{what} not installed. Install them {how}, or drop {engine!r} from engines.")


def available_engines() -> tuple[str, ...]:
    """The engines a corpus uses when it names none: espeak, and flite when installed (never festival, see above)."""
    return ("espeak", "flite") if flite_available() else ("espeak",)


def voice_catalogue(engines: tuple[str, ...] | list[str]) -> list[Voice]:
    """Every voice of the given engines, sorted, so a seed picks the same voices on every machine."""
    voices: list[Voice] = []
    for engine in engines:
        if engine == "espeak":
            voices += [Voice("espeak", f"{accent}+{variant}") for accent in ESPEAK_ACCENTS for variant in espeak_variants()]
        elif engine == "flite":
            if not flite_available():
                raise TTSError(
                    "flite is not installed. Install it (`apt-get install flite`) or drop 'flite' from engines."
                )
            voices += [Voice("flite", name) for name in FLITE_VOICES]
        elif engine in FESTIVAL_PACKAGES:
            packages = FESTIVAL_PACKAGES[engine]
            installed = festival_voices(engine)
            missing = [f"{name} ({package})" for name, package in packages.items() if name not in installed]
            if missing:
                raise missing_engine(engine, f"festival voices {', '.join(missing)} are")
            voices += [Voice(engine, name) for name in packages]
        elif engine == "pico":
            if not pico_available():
                raise missing_engine("pico", "SVOX Pico (pico2wave) is")
            voices += [Voice("pico", name) for name in PICO_VOICES]
        elif engine == "rhvoice":
            missing = sorted(set(RHVOICE_VOICES) - set(rhvoice_voices()))
            if missing:
                raise missing_engine("rhvoice", f"RHVoice's English voices {', '.join(missing)} are")
            voices += [Voice("rhvoice", name) for name in RHVOICE_VOICES]
        elif engine in FRONT_ENDS:
            missing = sorted(set(MBROLA_ACCENTED_VOICES) - set(mbrola_voices()))
            if missing:
                raise missing_engine(engine, f"MBROLA voices {', '.join(missing)} are")
            front_end = FRONT_ENDS[engine].voice
            if front_end not in festival_voices("festival") + festival_voices("festival_extra"):
                raise missing_engine(engine, f"festival's {front_end} (the English front end) is")
            voices += [Voice(engine, name) for name in MBROLA_ACCENTED_VOICES]
        elif engine in ("gnuspeech", "sam"):
            if not node_engines_available():
                raise node_engines_missing(engine)
            voices += [Voice(engine, name) for name in (gnuspeech_voices() if engine == "gnuspeech" else sam_voices())]
        else:
            raise TTSError(f"unknown TTS engine {engine!r}; choose from {ENGINES}")
    return sorted(voices)


class EspeakEngine(ServerProcess):
    """espeak-ng through its C library, one server process per engine (see ``espeak_server.py``)."""

    def __init__(self) -> None:
        # Its errors come back as replies; the rest of its standard error is the caller's to see.
        self.start([sys.executable, str(Path(__file__).with_name("espeak_server.py"))], keep_errors=False)
        header = self.process.stdout.read(4)
        if len(header) < 4:
            raise TTSError("the espeak-ng server did not start; check that `espeakng-loader` is installed")
        (value,) = struct.unpack("<i", header)
        if value < 0:
            raise TTSError(self.process.stdout.read(-value).decode())
        self.sample_rate = value

    def synthesise(self, text: str, voice: str, rate: int = 175, pitch: int = 50) -> np.ndarray:
        """Speak ``text``; returns int16 samples at :attr:`sample_rate`."""
        payload = self.ask({"text": text, "voice": voice, "rate": rate, "pitch": pitch},
                           died=f"the espeak-ng server died while speaking {text!r} with voice {voice!r}")
        return np.frombuffer(payload, dtype=np.int16).copy()


class ProgramEngine:
    """An engine that runs one short-lived program per utterance, which writes it to a WAV file.

    Subclasses give the program's command (:meth:`command`) and, for a program that reads its input on its standard
    input, :meth:`text_input`. A folder per utterance, gone when it is read: corpus workers end without closing their
    engines, so a folder kept for the engine's lifetime was left behind by every build.
    """

    name: str  # in error messages and the temporary folder's name

    def command(self, text: str, voice: str, duration_stretch: float, out: str) -> list[str]:
        raise NotImplementedError

    def text_input(self, text: str, voice: str, duration_stretch: float) -> str | None:
        """The program's standard input (``None``: the text is in the command)."""
        return None

    def synthesise(self, text: str, voice: str, duration_stretch: float = 1.0) -> tuple[np.ndarray, int]:
        """Speak ``text``; returns int16 samples and their sample rate."""
        stdin = self.text_input(text, voice, duration_stretch)
        with tempfile.TemporaryDirectory(prefix=f"lit-app-{self.name.lower()}-") as folder:
            out = os.path.join(folder, "utterance.wav")  # pico2wave wants the .wav suffix
            result = subprocess.run(self.command(text, voice, duration_stretch, out), capture_output=True,
                                    input=None if stdin is None else stdin.encode(), timeout=60)
            if result.returncode != 0 or not os.path.exists(out) or os.path.getsize(out) <= 44:
                raise TTSError(f"{self.name} for {text!r} with voice {voice!r} failed: "
                               f"{result.stderr.decode(errors='replace').strip()}")
            return sf.read(out, dtype="int16")

    def close(self) -> None:
        """Nothing to release (the interface of the engines)."""


class FliteEngine(ProgramEngine):
    """The flite program (Debian package ``flite``)."""

    name = "flite"

    def __init__(self) -> None:
        if not flite_available():
            raise TTSError("flite is not installed. Install it (`apt-get install flite`) or use espeak only.")
        # Looked up once; flite speaks an unknown voice name in its default voice without an error, as RHVoice does.
        listed = subprocess.run(["flite", "-lv"], capture_output=True, text=True).stdout
        self.voices = tuple(listed.split(":", 1)[-1].split())

    def command(self, text: str, voice: str, duration_stretch: float, out: str) -> list[str]:
        if voice not in self.voices:
            raise TTSError(f"flite for {text!r} with voice {voice!r} failed: no such voice "
                           f"(flite has: {', '.join(self.voices)})")
        return ["flite", "-voice", voice, "--setf", f"duration_stretch={duration_stretch:.3f}", "-t", text, "-o", out]


class PicoEngine(ProgramEngine):
    """SVOX Pico's ``pico2wave`` (Debian ``libttspico-utils``); a voice is a language tag."""

    name = "pico2wave"

    def __init__(self) -> None:
        if not pico_available():
            raise missing_engine("pico", "SVOX Pico (pico2wave) is")

    def command(self, text: str, voice: str, duration_stretch: float, out: str) -> list[str]:
        # The stretch becomes Pico's speed markup (100 is its normal speed).
        quoted = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return ["pico2wave", "-l", voice, "-w", out, f"<speed level='{round(100 / duration_stretch)}'>{quoted}</speed>"]


class RHVoiceEngine(ProgramEngine):
    """RHVoice's ``RHVoice-test`` (Debian ``rhvoice``), reading the text on its input."""

    name = "RHVoice"

    def __init__(self) -> None:
        self.voices = rhvoice_voices()  # looked up once: a corpus asks for thousands of utterances
        if not self.voices:
            raise missing_engine("rhvoice", "RHVoice and its English voices are")

    def command(self, text: str, voice: str, duration_stretch: float, out: str) -> list[str]:
        if voice not in self.voices:  # RHVoice-test speaks an unknown profile in its default voice
            raise TTSError(f"RHVoice for {text!r} with voice {voice!r} failed: no such voice installed "
                           f"(installed: {', '.join(self.voices)})")
        # The stretch becomes RHVoice's rate in percent of normal.
        return ["RHVoice-test", "-p", voice, "-r", str(round(100 / duration_stretch)), "-o", out]

    def text_input(self, text: str, voice: str, duration_stretch: float) -> str:
        return text


class FestivalEngine(ServerProcess):
    """Festival (Debian ``festival`` and ``festvox-*`` voices) as one ``festival --pipe`` process per engine.

    Starting festival costs 0.2 s and an utterance a few milliseconds, so the process stays up and reads one Scheme
    request per utterance; each request ends by printing a marker, which is how we know the utterance is written.
    """

    def __init__(self) -> None:
        if shutil.which("festival") is None:
            raise TTSError("festival is not installed. Install it (`apt-get install festival festvox-kallpc16k`) "
                           "or drop 'festival' from engines.")
        self.start(["festival", "--pipe"])
        self.requests = 0

    def synthesise(self, text: str, voice: str, duration_stretch: float = 1.0, encoding: str = "utf-8",
                   settings: str = "") -> tuple[np.ndarray, int]:
        """Speak ``text`` (sent in the voice's ``encoding``, after the voice's Scheme ``settings``); returns int16
        samples and their sample rate (16 kHz diphone, 32 kHz HTS voices)."""
        # A folder per utterance, gone when it is read (as for flite).
        with tempfile.TemporaryDirectory(prefix="lit-app-festival-") as folder:
            out = os.path.join(folder, "utterance.wav")
            self._run(text, voice, duration_stretch, encoding, settings, f"(utt.save.wave UTT \"{out}\" 'riff)", out)
            samples, rate = sf.read(out, dtype="int16")
        return samples, rate

    def phones(self, text: str, voice: str, duration_stretch: float = 1.0) -> str:
        """The phones of ``text`` as the voice's front end says them, in MBROLA's ``.pho`` format (a phone, its
        duration in ms and its pitch targets a line), without making a waveform."""
        with tempfile.TemporaryDirectory(prefix="lit-app-festival-") as folder:
            out = os.path.join(folder, "utterance.pho")
            no_waveform = "(require 'mbrola)(Parameter.set 'Synth_Method (lambda (utt) utt))(set! after_synth_hooks nil)"
            self._run(text, voice, duration_stretch, "utf-8", no_waveform, f'(save_segments_mbrola UTT "{out}")', out)
            return Path(out).read_text()

    def _run(self, text: str, voice: str, duration_stretch: float, encoding: str, settings: str, save: str,
             out: str) -> None:
        """Synthesise ``text`` and run ``save`` (Scheme, ``UTT`` standing for the utterance), which writes ``out``."""
        self.requests += 1
        marker = f"lit-app-done-{self.requests}"
        quoted = text.replace("\\", "\\\\").replace('"', '\\"')
        utterance = f'(utt.synth (Utterance Text "{quoted}"))'
        request = (f"(begin (voice_{voice}) {settings} (Parameter.set 'Duration_Stretch {duration_stretch:.3f})"
                   f" {save.replace('UTT', utterance)})"
                   f'(format t "{marker}\\n")(fflush nil)\n')
        try:
            self.process.stdin.write(request.encode(encoding))
            self.process.stdin.flush()
            answer = self.process.stdout.readline().decode().strip()
        except BrokenPipeError:
            answer = ""
        # An error (an unknown voice) skips the rest of the ``begin``, the wave included, but not the marker.
        if answer != marker or not os.path.exists(out):
            raise TTSError(f"festival failed for {text!r} with voice {voice!r}: {self.last_error('festival exited')}")


class MbrolaEngine(ProgramEngine):
    """MBROLA's voices of other languages reading English (``mbrola.py``): festival's English front end says the
    phones, :func:`~lit_app.data.synth.mbrola.accented_pho` turns them into the voice's own, and one ``mbrola`` run
    per utterance reads them on its input. The front end is one festival process for every voice.

    Args:
        engine: ``mbrola_accented`` (festival's American front end) or ``mbrola_british`` (its British one).
    """

    name = "mbrola"

    def __init__(self, engine: str = "mbrola_accented") -> None:
        self.voices = mbrola_voices()  # looked up once, as RHVoice's
        if not self.voices:
            raise missing_engine(engine, "MBROLA and its voices are")
        self.front_end_voice, self.british = FRONT_ENDS[engine]
        self.front_end = FestivalEngine()

    def text_input(self, text: str, voice: str, duration_stretch: float) -> str:
        if voice not in self.voices:  # checked first: this runs before the command
            raise TTSError(f"MBROLA voice {voice!r} is not installed (mbrola-{voice}) or not one of ours")
        return accented_pho(self.front_end.phones(text, self.front_end_voice, duration_stretch), voice, self.british)

    def command(self, text: str, voice: str, duration_stretch: float, out: str) -> list[str]:
        ratio = FEMALE_PITCH_RATIO if MBROLA_ACCENTED_VOICES[voice] else 1.0
        # -e: a diphone the voice lacks (English puts phones together that its language never does) is skipped.
        return ["mbrola", "-e", "-f", f"{ratio}", str(database(voice)), "-", out]

    def close(self) -> None:
        self.front_end.close()


def trim_silence(samples: np.ndarray, threshold_db: float = -40.0, margin: int = 160) -> np.ndarray:
    """Cut leading and trailing samples quieter than ``threshold_db`` below the peak (keeps ``margin``)."""
    peak = np.abs(samples).max() if samples.size else 0.0
    if peak == 0.0:
        return samples[:0]
    loud = np.flatnonzero(np.abs(samples) >= peak * 10.0 ** (threshold_db / 20.0))
    return samples[max(loud[0] - margin, 0) : loud[-1] + 1 + margin]


class Speaker:
    """Speaks text with any catalogue voice: float32 mono at ``sample_rate``, silence trimmed.

    Engines start on first use, so a worker process pays only for the engines its voices need. Each festival voice
    speaks in a process of its own, and a festival process holds about 330 MB (its lexicon), so at most
    ``max_festival_processes`` stay up: the one used longest ago is closed when another voice needs one. MBROLA's
    voices share one more, their English front end.
    """

    def __init__(self, sample_rate: int = 16000, max_festival_processes: int = 4) -> None:
        self.sample_rate = sample_rate
        self.max_festival_processes = max_festival_processes
        self._espeak: EspeakEngine | None = None
        self._flite: FliteEngine | None = None
        self._pico: PicoEngine | None = None
        self._rhvoice: RHVoiceEngine | None = None
        self._node: NodeEngine | None = None  # GnuSpeech and SAM
        self._mbrola: dict[str, MbrolaEngine] = {}  # by engine: American or British front end
        # One festival process per voice: in a shared one, a voice can leave settings behind (the Czech voices do)
        # that change the next voice's samples, and a rebuilt clip must come out as it did the first time.
        self._festival: dict[str, FestivalEngine] = {}

    def speak(self, text: str, voice: Voice, rate: int = 175, pitch: int = 50, stretch: float = 1.0) -> np.ndarray:
        import torchaudio.functional as AF

        from lit_app.audio.pcm import pcm16_to_float

        if voice.engine == "espeak":
            self._espeak = self._espeak or EspeakEngine()
            samples, source_rate = self._espeak.synthesise(text, voice.name, rate, pitch), self._espeak.sample_rate
        elif voice.engine == "flite":
            self._flite = self._flite or FliteEngine()
            samples, source_rate = self._flite.synthesise(text, voice.name, stretch)
        elif voice.engine == "pico":
            self._pico = self._pico or PicoEngine()
            samples, source_rate = self._pico.synthesise(text, voice.name, stretch)
        elif voice.engine == "rhvoice":
            self._rhvoice = self._rhvoice or RHVoiceEngine()
            samples, source_rate = self._rhvoice.synthesise(text, voice.name, stretch)
        elif voice.engine in ("gnuspeech", "sam"):
            self._node = self._node or NodeEngine(voice.engine)
            samples, source_rate = self._node.synthesise(voice.engine, text, voice.name, stretch)
        elif voice.engine in FRONT_ENDS:
            if voice.engine not in self._mbrola:
                self._mbrola[voice.engine] = MbrolaEngine(voice.engine)
            samples, source_rate = self._mbrola[voice.engine].synthesise(text, voice.name, stretch)
        elif voice.engine in FESTIVAL_PACKAGES:
            if voice.name not in self._festival:
                while len(self._festival) >= self.max_festival_processes:
                    self._festival.pop(next(iter(self._festival))).close()
                self._festival[voice.name] = FestivalEngine()
            self._festival[voice.name] = self._festival.pop(voice.name)  # the last used last in the order
            text, encoding, settings = (festival_request(text, voice.name) if voice.engine == "festival_accented"
                                        else (text, "utf-8", ""))
            samples, source_rate = self._festival[voice.name].synthesise(text, voice.name, stretch, encoding, settings)
        else:
            raise TTSError(f"unknown TTS engine {voice.engine!r}; choose from {ENGINES}")
        audio = pcm16_to_float(samples)
        if source_rate != self.sample_rate:
            audio = AF.resample(audio, source_rate, self.sample_rate)
        trimmed = trim_silence(audio.numpy())
        if trimmed.size == 0:
            raise TTSError(f"{voice.id} produced silence for {text!r}")
        return trimmed

    def close(self) -> None:
        for engine in (self._espeak, self._flite, self._pico, self._rhvoice, self._node, *self._mbrola.values(),
                       *self._festival.values()):
            if engine is not None:
                engine.close()
