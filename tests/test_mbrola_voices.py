"""MBROLA's voices of other languages reading English (``mbrola_accented``): festival's English phones, each replaced
by the nearest phone of the voice's language, spoken by MBROLA."""

import numpy as np
import pytest

from lit_app.data.synth import mbrola
from lit_app.data.synth.corpus import split_voices
from lit_app.data.synth.keywords import SyntheticKeywordCorpus
from lit_app.data.synth.mbrola import (
    BRITISH_TO_SAMPA,
    ENGLISH_TO_SAMPA,
    MBROLA_ACCENTED_VOICES,
    accented_pho,
    british_phone_map,
    halves,
    mbrola_voices,
    phone_map,
)
from lit_app.data.synth.tts import ENGINE_FAMILY, FestivalEngine, Speaker, TTSError, Voice, festival_voices
from tests.conftest import TINY_CORPUS

INSTALLED = pytest.mark.skipif(
    len(mbrola_voices()) < len(MBROLA_ACCENTED_VOICES) or "kal_diphone" not in festival_voices(),
    reason="MBROLA's voices are not installed (LIT_APP_MORE_VOICES=1 bash scripts/setup.sh installs them)")
FESTIVAL = pytest.mark.skipif("kal_diphone" not in festival_voices(), reason="festival's kal_diphone is missing")


def test_festivals_phones_become_the_voices_own(monkeypatch):
    monkeypatch.setattr(mbrola, "phone_map", lambda voice: {"pau": "_", "th": "s", "r": "R", "iy": "i:"})
    pho = "pau 200 \n\nth 117 0 99 \n\nr 45 \n\niy 200 50 111 100 105 \n\npau 240 \n"
    assert accented_pho(pho, "de2") == "_ 200\ns 117 0 99\nR 45\ni: 200 50 111 100 105\n_ 240\n"
    with pytest.raises(TTSError, match="no stand-in for: 'zz'.*ENGLISH_TO_SAMPA"):
        accented_pho("zz 100\n", "de2")


def test_mbrola_voices_are_festivals_family():
    """Festival's front end says what they speak, so holding festival out holds them out."""
    assert ENGINE_FAMILY["mbrola_accented"] == ENGINE_FAMILY["mbrola_british"] == "festival"
    assert all(stand_ins for stand_ins in ENGLISH_TO_SAMPA.values())
    assert all(stand_ins for stand_ins in BRITISH_TO_SAMPA.values())


def test_a_diphthong_the_voice_lacks_is_spoken_as_its_two_halves(monkeypatch):
    assert halves(["ou", "151", "0", "120", "50", "110", "80", "100"], ["@", "U"]) == [
        ["@", "75", "0", "120"], ["U", "76", "0", "110", "60", "100"]]
    monkeypatch.setattr(mbrola, "british_phone_map", lambda voice: {"#": "_", "g": "g", "ou": "@ U"})
    assert accented_pho("# 100\ng 60\nou 200 25 120 75 100\n# 50\n", "de1", british=True) == (
        "_ 100\ng 60\n@ 100 50 120\nU 100 50 100\n_ 50\n")
    with pytest.raises(TTSError, match="no stand-in for: 'ow'.*BRITISH_TO_SAMPA"):
        accented_pho("ow 100\n", "de1", british=True)


def test_a_speaker_read_through_both_front_ends_is_one_speaker_in_one_split():
    american, british = Voice("mbrola_accented", "de1"), Voice("mbrola_british", "de1")
    assert british.speaker == american.speaker == "mbrola_accented:de1"
    names = sorted(MBROLA_ACCENTED_VOICES)
    voices = [Voice(engine, name) for engine in ("mbrola_accented", "mbrola_british") for name in names]
    splits = split_voices(voices, 0.1, 0.1, np.random.default_rng(0))
    where = {voice: split for split, members in splits.items() for voice in members}
    assert all(where[Voice("mbrola_accented", name)] == where[Voice("mbrola_british", name)] for name in names)
    assert {"train", "testing"} <= set(where.values())


@FESTIVAL
def test_festival_gives_the_phones_durations_and_pitch_of_a_word():
    engine = FestivalEngine()
    try:
        lines = [line.split() for line in engine.phones("left", "kal_diphone").splitlines() if line.strip()]
        slower = [line.split() for line in engine.phones("left", "kal_diphone", 1.5).splitlines() if line.strip()]
    finally:
        engine.close()
    assert [fields[0] for fields in lines] == ["pau", "l", "eh", "f", "t", "pau"]
    assert all(fields[0] in ENGLISH_TO_SAMPA for fields in lines)
    assert len(lines[2]) > 2  # the vowel carries a pitch target
    assert int(slower[2][1]) > int(lines[2][1])


@INSTALLED
def test_every_voice_maps_every_english_phone_and_speaks():
    speaker = Speaker()
    try:
        for name in MBROLA_ACCENTED_VOICES:
            assert set(phone_map(name)) == set(ENGLISH_TO_SAMPA), name
            normal = speaker.speak("left", Voice("mbrola_accented", name))
            assert 0.2 < normal.size / 16000 < 2.0 and np.abs(normal).max() > 0.05, name
        for name in ("de1", "sw2", "es1"):
            assert set(british_phone_map(name)) == set(BRITISH_TO_SAMPA), name
            british = speaker.speak("go", Voice("mbrola_british", name))
            assert 0.1 < british.size / 16000 < 2.0 and np.abs(british).max() > 0.05, name
        assert british_phone_map("sw2")["ou"] == "@ U"  # RP's GOAT from a voice without the diphthong
        german = phone_map("de2")
        assert german["th"] == "s" and german["r"] == "R"  # no /th/ in German; its r is uvular
        assert phone_map("es1")["v"] == "b"
        slow = speaker.speak("left", Voice("mbrola_accented", "de2"), stretch=1.3)
        assert slow.size > 1.15 * speaker.speak("left", Voice("mbrola_accented", "de2")).size
        again = Speaker()
        assert np.array_equal(again.speak("left", Voice("mbrola_accented", "fr2")),
                              speaker.speak("left", Voice("mbrola_accented", "fr2")))
        again.close()
        with pytest.raises(TTSError, match="MBROLA voice 'xx9' is not installed"):
            speaker.speak("yes", Voice("mbrola_accented", "xx9"))
    finally:
        speaker.close()


def test_a_corpus_records_which_mbrola_voices_speak():
    """The voice list grew from 34 to 45: a folder built with other voices is refused, not reused."""
    settings = SyntheticKeywordCorpus(**{**TINY_CORPUS, "engines": ["espeak", "mbrola_accented"]}).resolved_settings()
    assert settings["mbrola_voices"] == sorted(MBROLA_ACCENTED_VOICES)
    assert "mbrola_voices" not in SyntheticKeywordCorpus(**TINY_CORPUS).resolved_settings()
