"""The synthetic sentence corpus: vocabulary, layout, split by voice and by sentence, determinism, resuming."""

import csv
import hashlib
import json

import numpy as np
import pytest
import soundfile as sf

from lit_app.data.synth import sentences as corpus_module
from lit_app.data.synth.phrases import generate_sentences, number_words, vocabulary
from lit_app.data.synth.sentences import SyntheticSentenceCorpus, read_corpus
from lit_app.data.synth.tts import flite_available
from lit_app.folders import CorpusError
from lit_app.text import Alphabet
from tests import asr_helpers
from tests.asr_helpers import TINY_SENTENCES

tiny_sentences = asr_helpers.tiny_sentences  # the shared corpus fixture

SPLITS = ("train", "validation", "testing")


def manifest(root):
    with open(root / "manifest.csv") as handle:
        return list(csv.DictReader(handle))


def wav_hashes(root):
    return {p.relative_to(root).as_posix(): hashlib.md5(p.read_bytes()).hexdigest() for p in root.rglob("*.wav")}


def test_vocabulary_and_sentences_fit_the_alphabet():
    words = vocabulary()
    assert len(words) >= 500
    assert {"zero", "nine", "stop", "turn", "kitchen", "please", "tomorrow"} <= words
    sentences = generate_sentences(300, np.random.default_rng(1))
    assert len(set(sentences)) == 300
    alphabet = Alphabet()
    for sentence in sentences:
        assert alphabet.normalise(sentence) == sentence
        assert set(sentence.split()) <= words
    assert sentences == generate_sentences(300, np.random.default_rng(1))


def test_number_words():
    assert number_words(0) == "zero" and number_words(15) == "fifteen" and number_words(40) == "forty"
    assert number_words(312) == "three hundred and twelve" and number_words(2005) == "two thousand and five"
    with pytest.raises(ValueError):
        number_words(10000)


def test_layout_manifest_and_clips(tiny_sentences):
    rows = manifest(tiny_sentences)
    assert len(rows) == 40
    info = json.loads((tiny_sentences / "corpus.json").read_text())
    assert info["complete"] and info["clips"] == 40 and info["vocabulary_size"] >= 500
    assert info["clips_per_split"] == {"train": 32, "validation": 4, "testing": 4}
    for row in rows[:10]:
        data, rate = sf.read(tiny_sentences / row["path"], dtype="int16")
        assert rate == 16000 and data.ndim == 1 and data.size == int(row["num_samples"]) and np.abs(data).max() > 0
        assert row["path"].startswith(f"{row['split']}/")
    # a sentence takes longer to say than its silences
    assert min(int(r["num_samples"]) for r in rows) > 0.6 * 16000
    by_split = read_corpus(tiny_sentences)
    assert [len(by_split[s]) for s in SPLITS] == [32, 4, 4]
    assert by_split["testing"][0].transcript in {r["transcript"] for r in rows}


def test_split_by_voice_and_by_sentence(tiny_sentences):
    rows = manifest(tiny_sentences)
    voices = {s: {r["voice"] for r in rows if r["split"] == s} for s in SPLITS}
    texts = {s: {r["transcript"] for r in rows if r["split"] == s} for s in SPLITS}
    for a, b in (("train", "validation"), ("train", "testing"), ("validation", "testing")):
        assert voices[a].isdisjoint(voices[b])
        assert texts[a].isdisjoint(texts[b])
    held_out = json.loads((tiny_sentences / "corpus.json").read_text())["voices"]
    assert voices["testing"] <= set(held_out["testing"])


def test_several_speakers_per_sentence_stay_in_its_split():
    corpus = SyntheticSentenceCorpus(num_sentences=30, speakers_per_sentence=3, engines=["espeak"], seed=4)
    specs, voices = corpus.plan()
    assert len(specs) == 90
    for sentence in {spec["sentence"] for spec in specs}:
        spoken = [spec for spec in specs if spec["sentence"] == sentence]
        assert len({spec["split"] for spec in spoken}) == 1 and len({spec["voice"] for spec in spoken}) == 3
        assert all(spec["voice"] in {v.id for v in voices[spec["split"]]} for spec in spoken)


def test_same_seed_same_bytes_and_other_settings_refused(tmp_path, tiny_sentences):
    again = SyntheticSentenceCorpus(**TINY_SENTENCES).build(tmp_path / "again", show_progress=False)
    assert wav_hashes(again) == wav_hashes(tiny_sentences)
    assert (again / "manifest.csv").read_bytes() == (tiny_sentences / "manifest.csv").read_bytes()
    with pytest.raises(CorpusError, match="num_sentences: 40 -> 41"):
        SyntheticSentenceCorpus(**{**TINY_SENTENCES, "num_sentences": 41}).build(again, show_progress=False)


def test_interrupted_build_resumes_to_the_same_corpus(tmp_path, monkeypatch, tiny_sentences):
    real_render = corpus_module.render_sentence_clips
    calls = []

    def render_then_fail(specs, root):
        if calls:
            raise KeyboardInterrupt  # the build is stopped after its first chunk of clips
        calls.append(len(specs))
        return real_render(specs, root)

    root = tmp_path / "resumed"
    monkeypatch.setattr(corpus_module, "render_sentence_clips", render_then_fail)
    with pytest.raises(KeyboardInterrupt):
        SyntheticSentenceCorpus(**TINY_SENTENCES).build(root, show_progress=False)
    assert not json.loads((root / "corpus.json").read_text())["complete"]
    assert not (root / "manifest.csv").exists()
    first = [path for path in wav_hashes(root) if not path.startswith("_background_noise_/")]
    assert 0 < len(first) < 40
    (root / "train" / ".leftover.wav.part").parent.mkdir(exist_ok=True)
    (root / "train" / ".leftover.wav.part").write_bytes(b"half a file")

    rendered = []

    def render_and_count(specs, root):
        rendered.append(len(specs))
        return real_render(specs, root)

    monkeypatch.setattr(corpus_module, "render_sentence_clips", render_and_count)
    SyntheticSentenceCorpus(**TINY_SENTENCES).build(root, show_progress=False)
    assert sum(rendered) == 40 - len(first)  # only the missing clips were synthesised
    assert wav_hashes(root) == wav_hashes(tiny_sentences)
    assert not list(root.rglob("*.part"))
    assert json.loads((root / "corpus.json").read_text())["complete"]


def test_a_manifest_row_leading_out_of_the_corpus_is_refused(tiny_sentences, tmp_path):
    import csv
    import shutil

    from lit_app.paths import ListedPathError

    copy = tmp_path / "corpus"
    shutil.copytree(tiny_sentences, copy)
    manifest = copy / "manifest.csv"
    with open(manifest, newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows[0]["path"] = "../../etc/passwd"
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(ListedPathError, match=r"manifest.csv:2: '../../etc/passwd' lies outside"):
        read_corpus(copy)


def test_a_test_only_sentence_corpus_holds_every_sentence_and_voice_in_testing():
    settings = {**TINY_SENTENCES, "val_sentence_fraction": 0.0, "test_sentence_fraction": 1.0,
                "val_voice_fraction": 0.0, "test_voice_fraction": 1.0}
    specs, voices = SyntheticSentenceCorpus(**settings).plan()
    assert {spec["split"] for spec in specs} == {"testing"} and len(specs) == TINY_SENTENCES["num_sentences"]
    assert voices["train"] == voices["validation"] == []
    with pytest.raises(ValueError, match="val_sentence_fraction: 0"):
        SyntheticSentenceCorpus(**{**settings, "val_sentence_fraction": 0.1}).plan()


def test_a_sentence_corpus_without_test_voices_has_no_test_sentences():
    settings = {**TINY_SENTENCES, "test_sentence_fraction": 0.0, "test_voice_fraction": 0.0}
    specs, voices = SyntheticSentenceCorpus(**settings).plan()
    assert {spec["split"] for spec in specs} == {"train", "validation"} and voices["testing"] == []
    with pytest.raises(ValueError, match="test_voice_fraction is 0.0 and test_sentence_fraction 0.1"):
        SyntheticSentenceCorpus(**{**settings, "test_sentence_fraction": 0.1})


@pytest.mark.skipif(not flite_available(), reason="flite is not installed")
def test_per_engine_shares_give_each_engine_as_many_sentences_and_leave_other_corpora_unchanged():
    settings = {**TINY_SENTENCES, "num_sentences": 60, "engines": ["espeak", "flite"]}
    per_voice = SyntheticSentenceCorpus(**settings)
    assert "engine_shares" not in per_voice.settings
    assert per_voice.plan() == SyntheticSentenceCorpus(**settings, engine_shares="per_voice").plan()
    specs, _ = SyntheticSentenceCorpus(**settings, engine_shares="per_engine").plan()
    train = [spec["voice"].split(":")[0] for spec in specs if spec["split"] == "train"]
    assert abs(train.count("flite") - train.count("espeak")) <= 1
    assert sum(spec["voice"].startswith("flite") for spec in per_voice.plan()[0]) < len(specs) / 4
