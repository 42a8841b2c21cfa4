"""festival_accented: festival's other-language voices reading respelled Speech Commands words."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from lit_app.data.synth.accents import ACCENTED_VOICES, RESPELLINGS, respell
from lit_app.data.synth.keywords import SyntheticKeywordCorpus
from lit_app.data.synth.sentences import SyntheticSentenceCorpus
from lit_app.data.synth.tts import FESTIVAL_PACKAGES, Speaker, Voice, festival_voices, voice_catalogue
from lit_app.data.vocab import WORDS_V2
from lit_app.experiments.engine_transfer import heard_without
from lit_app.folders import CorpusError
from tests.conftest import TINY_CORPUS

ACCENTED = pytest.mark.skipif(len(festival_voices("festival_accented")) < len(ACCENTED_VOICES),
                              reason="festival's accented voices are not installed (scripts/setup.sh installs them)")


def test_every_language_respells_every_speech_commands_word():
    languages = {language for _, language in ACCENTED_VOICES.values()}
    assert languages == set(RESPELLINGS)
    for language in languages:
        assert set(RESPELLINGS[language]) == set(WORDS_V2)
    assert respell("Right", "czech_krb") == "rajt" and respell("yes", "lp_diphone") == "ies"


def test_setup_installs_every_festival_voice():
    setup = (Path(__file__).parents[1] / "scripts" / "setup.sh").read_text()
    for packages in FESTIVAL_PACKAGES.values():
        assert all(package in setup for package in packages.values())


def test_a_word_without_a_respelling_is_named():
    with pytest.raises(ValueError, match=r"no czech respelling of \['the', 'ship'\].*Speech Commands words only"):
        respell("stop the ship", "czech_dita")


def test_sentence_corpora_refuse_accented_voices():
    with pytest.raises(ValueError, match="festival_accented speaks the Speech Commands words only"):
        SyntheticSentenceCorpus(engines=["espeak", "festival_accented"])


def test_holding_festival_out_holds_out_its_accented_voices():
    engines = ["espeak", "flite", "festival", "festival_accented"]
    assert heard_without(engines, "festival") == ["espeak", "flite"]
    assert heard_without(engines, "flite") == ["espeak", "festival", "festival_accented"]
    assert heard_without(engines, "festival_accented") == ["espeak", "flite"]


@ACCENTED
def test_each_accented_voice_speaks_and_the_same_clip_comes_out_whatever_spoke_before():
    voices = voice_catalogue(["festival_accented"])
    assert {v.name for v in voices} == set(ACCENTED_VOICES)
    first = Speaker()
    spoken = {v: first.speak("sheila", v) for v in voices}
    # Another speaker, voices in the other order: a Czech voice's random pauses or one voice's settings left in a
    # shared festival process would change these samples.
    again = Speaker()
    for v in reversed(voices):
        assert spoken[v].size > 1600 and np.abs(spoken[v]).max() > 0.05
        np.testing.assert_array_equal(again.speak("sheila", v), spoken[v])
    first.close()
    again.close()


@ACCENTED
def test_an_accented_keyword_corpus_builds(tmp_path):
    corpus = SyntheticKeywordCorpus(**{**TINY_CORPUS, "clips_per_keyword": len(ACCENTED_VOICES), "clips_per_other_word": 0,
                                       "keywords": ["right", "yes"], "engines": ["festival_accented"],
                                       "val_voice_fraction": 0.0, "test_voice_fraction": 1.0})
    root = corpus.build(tmp_path / "accented", show_progress=False)
    with open(root / "manifest.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * len(ACCENTED_VOICES) and {row["voice"] for row in rows} == {Voice("festival_accented", v).id for v in ACCENTED_VOICES}
    # A folder built with fewer accented voices (before the Telugu and Russian ones) is refused, naming them.
    info = json.loads((root / "corpus.json").read_text())
    info["settings"]["accented_voices"] = info["settings"]["accented_voices"][:9]
    (root / "corpus.json").write_text(json.dumps(info))
    with pytest.raises(CorpusError, match="accented_voices.*Delete the folder to rebuild it"):
        corpus.build(root, show_progress=False)


def test_only_corpora_with_accented_voices_record_them():
    assert "accented_voices" not in SyntheticKeywordCorpus(**{**TINY_CORPUS, "engines": ["espeak"]}).resolved_settings()


@ACCENTED
def test_a_speaker_keeps_few_festival_processes_and_a_restarted_voice_speaks_the_same():
    speaker = Speaker(max_festival_processes=2)
    voices = voice_catalogue(["festival_accented"])[:3]
    try:
        first = [speaker.speak("yes", voice) for voice in voices]
        assert list(speaker._festival) == [voices[1].name, voices[2].name]  # the first was closed
        again = speaker.speak("yes", voices[0])  # in a new process
        assert list(speaker._festival) == [voices[2].name, voices[0].name]
        np.testing.assert_array_equal(again, first[0])
    finally:
        speaker.close()
