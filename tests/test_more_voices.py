"""The engines that `LIT_APP_MORE_VOICES=1 bash scripts/setup.sh` adds: festival's other English voices, SVOX Pico,
RHVoice and MBROLA's voices of other languages. Where they are not installed (CI), each names the command that installs it."""

from pathlib import Path

import numpy as np
import pytest

from lit_app.data.synth import tts
from lit_app.data.synth.corpus import split_voices
from lit_app.data.synth.tts import (
    FESTIVAL_EXTRA_VOICES,
    FLITE_VOICES,
    MORE_VOICES_PACKAGES,
    PICO_VOICES,
    RHVOICE_VOICES,
    Speaker,
    TTSError,
    Voice,
    festival_voices,
    pico_available,
    rhvoice_voices,
    voice_catalogue,
)
from lit_app.folders import CorpusError

INSTALLED = pytest.mark.skipif(
    not (pico_available() and len(rhvoice_voices()) == len(RHVOICE_VOICES)
         and len(festival_voices("festival_extra")) == len(FESTIVAL_EXTRA_VOICES)),
    reason="the extra voices are not installed (LIT_APP_MORE_VOICES=1 bash scripts/setup.sh installs them)")


def test_setup_installs_every_extra_voice_on_request():
    setup = (Path(__file__).parents[1] / "scripts" / "setup.sh").read_text()
    assert "LIT_APP_MORE_VOICES" in setup
    assert all(package in setup for packages in MORE_VOICES_PACKAGES.values() for package in packages)


@pytest.mark.parametrize("engine", ["festival_extra", "pico", "rhvoice", "mbrola_accented"])
def test_a_missing_engine_names_the_command_that_installs_it(engine, monkeypatch):
    monkeypatch.setattr(tts.shutil, "which", lambda program: None)
    with pytest.raises(TTSError, match=rf"LIT_APP_MORE_VOICES=1 bash scripts/setup.sh.*drop '{engine}' from engines"):
        voice_catalogue(["espeak", engine])


def test_pico_has_too_few_voices_to_train_and_test_on():
    """Its two voices cannot give a corpus a validation and a test voice: Pico is an outside engine only."""
    with pytest.raises(CorpusError, match="pico voices: only 2"):
        split_voices([Voice("pico", name) for name in PICO_VOICES], 0.1, 0.1, np.random.default_rng(0))


def test_rhvoices_arctic_speakers_share_a_split_with_flites():
    voices = ([Voice("flite", name) for name in FLITE_VOICES] + [Voice("rhvoice", name) for name in RHVOICE_VOICES]
              + [Voice("espeak", f"en+v{i}") for i in range(30)])
    assert Voice("rhvoice", "slt").speaker == Voice("flite", "slt").speaker == "slt"
    assert Voice("rhvoice", "alan").speaker == Voice("flite", "awb").speaker == "awb"
    for seed in range(20):
        where: dict[str, set[str]] = {}
        for split, members in split_voices(voices, 0.1, 0.2, np.random.default_rng(seed)).items():
            for voice in members:
                where.setdefault(voice.speaker, set()).add(split)
        assert len(where["slt"]) == 1 and len(where["awb"]) == 1


@INSTALLED
def test_every_extra_voice_speaks_and_a_stretch_slows_it():
    speaker = Speaker()
    try:
        for voice in voice_catalogue(["festival_extra", "pico", "rhvoice"]):
            normal = speaker.speak("left", voice)
            assert 0.2 < normal.size / 16000 < 2.0 and np.abs(normal).max() > 0.05, voice.id
            if voice.engine != "festival_extra":  # festival's stretch is tested with its own voices
                assert speaker.speak("left", voice, stretch=1.3).size > 1.15 * normal.size, voice.id
        with pytest.raises(TTSError, match="RHVoice for 'yes' with voice 'nobody' failed"):
            speaker.speak("yes", Voice("rhvoice", "nobody"))
    finally:
        speaker.close()
