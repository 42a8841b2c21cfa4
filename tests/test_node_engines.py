"""GnuSpeech and SAM, the two engines that run in Node.js (``lit_app/data/synth/node_engines.py``). Where they are not
installed (CI), each names the command that installs it."""

from pathlib import Path

import numpy as np
import pytest

from lit_app.data.synth import node_engines
from lit_app.data.synth.node_engines import (
    GNUSPEECH_BASE_VOICES,
    SAM_PRESETS,
    gnuspeech_voice,
    gnuspeech_voices,
    node_engines_available,
    sam_voice,
    sam_voices,
)
from lit_app.data.synth.tts import ENGINE_FAMILY, Speaker, TTSError, Voice, voice_catalogue

ROOT = Path(__file__).parents[1]
INSTALLED = pytest.mark.skipif(not node_engines_available(),
                               reason="GnuSpeech and SAM are not installed (LIT_APP_MORE_VOICES=1 bash scripts/setup.sh)")


def test_setup_installs_the_pinned_packages_on_request():
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert "lit_app/data/synth/node/package-lock.json" in setup and "npm ci" in setup
    lock = (ROOT / "lit_app" / "data" / "synth" / "node" / "package-lock.json").read_text()
    assert '"version": "0.3.0"' in lock and '"version": "0.3.1"' in lock  # gnuspeech-wasm, sam-js


@pytest.mark.parametrize("engine", ["gnuspeech", "sam"])
def test_a_missing_engine_names_the_command_that_installs_it(engine, monkeypatch):
    monkeypatch.setattr(node_engines.shutil, "which", lambda program: None)
    with pytest.raises(TTSError, match=rf"LIT_APP_MORE_VOICES=1 bash scripts/setup.sh.*drop '{engine}' from engines"):
        voice_catalogue(["espeak", engine])
    with pytest.raises(TTSError, match="LIT_APP_MORE_VOICES=1 bash scripts/setup.sh"):
        Speaker().speak("yes", Voice(engine, sam_voices()[0] if engine == "sam" else gnuspeech_voices()[0]))


def test_each_engine_is_a_family_of_its_own():
    """Neither is another engine's program, so holding espeak-ng out keeps both in training."""
    assert ENGINE_FAMILY["gnuspeech"] == "gnuspeech" and ENGINE_FAMILY["sam"] == "sam"


def test_sams_voices_are_its_manuals_and_draws_from_their_range():
    assert sam_voice("sam") == {"speed": 72, "pitch": 64, "throat": 128, "mouth": 128}
    drawn = [sam_voice(name) for name in sam_voices() if name not in SAM_PRESETS]
    assert len(drawn) == len(sam_voices()) - len(SAM_PRESETS) and len({tuple(v.values()) for v in drawn}) == len(drawn)
    assert drawn == [sam_voice(name) for name in sam_voices() if name not in SAM_PRESETS]  # a name is its seed
    for voice in drawn:
        assert 72 <= voice["speed"] <= 92 and 32 <= voice["pitch"] <= 80
        assert 110 <= voice["throat"] <= 190 and 105 <= voice["mouth"] <= 200
    with pytest.raises(TTSError, match="SAM has no voice 'nobody'"):
        sam_voice("nobody")


@INSTALLED
def test_gnuspeechs_variants_move_the_vocal_tract_and_keep_intonation_fixed():
    shipped, control = gnuspeech_voice("female-0")
    assert shipped == node_engines.gnuspeech_base_voice("female") and shipped["vocal_tract_length"] == 15.0
    assert control == {"random_intonation": 0, "intonation_drift": 0}
    variant, control = gnuspeech_voice("female-3")
    assert variant == gnuspeech_voice("female-3")[0] and variant != gnuspeech_voice("female-4")[0]
    assert 15.0 * 0.92 <= variant["vocal_tract_length"] <= 15.0 * 1.08
    assert all(0.9 <= variant[f"radius_{k}_coef"] <= 1.1 for k in range(1, 9))
    assert control["random_intonation"] == 0 and control["intonation_drift"] == 0
    assert {name.rsplit("-", 1)[0] for name in gnuspeech_voices()} == set(GNUSPEECH_BASE_VOICES)
    with pytest.raises(TTSError, match="GnuSpeech has no voice 'male-99'"):
        gnuspeech_voice("male-99")


@INSTALLED
def test_every_voice_speaks_the_same_clip_each_time_and_a_stretch_slows_it():
    speaker, again = Speaker(), Speaker()
    try:
        voices = voice_catalogue(["gnuspeech", "sam"])
        assert len(voices) == len(gnuspeech_voices()) + len(sam_voices())
        clips = {}
        for voice in voices:
            clips[voice] = speaker.speak("left", voice)
            assert 0.2 < clips[voice].size / 16000 < 2.0 and np.abs(clips[voice]).max() > 0.05, voice.id
        for voice in (Voice("gnuspeech", "male-2"), Voice("sam", "drawn-05")):
            # A rebuilt clip comes out as it did (GnuSpeech's random intonation is off), in a new process too.
            assert np.array_equal(again.speak("left", voice), clips[voice]), voice.id
            assert speaker.speak("left", voice, stretch=1.3).size > 1.15 * clips[voice].size, voice.id
        assert clips[Voice("gnuspeech", "male-1")].shape != clips[Voice("gnuspeech", "male-2")].shape or not np.array_equal(
            clips[Voice("gnuspeech", "male-1")], clips[Voice("gnuspeech", "male-2")])
        with pytest.raises(TTSError, match="SAM has no voice 'nobody'"):
            speaker.speak("yes", Voice("sam", "nobody"))
    finally:
        speaker.close()
        again.close()

