"""Corpus readers (LibriSpeech, Common Voice, synthetic), bucketed batching and the ASR data module."""

from types import SimpleNamespace

import pytest
import soundfile as sf
import torch

from lit_app.audio.io import AudioError, AudioPolicy
from lit_app.audio.voice_augment import VoiceAugment
from lit_app.data import commonvoice, librispeech
from lit_app.data.asr import ASRBatch, ASRDataModule, BucketBatchSampler, UtteranceDataset, collate
from lit_app.data.utterances import Utterance
from lit_app.paths import ListedPathError
from lit_app.text import Alphabet, TranscriptError
from tests import asr_helpers
from tests.asr_helpers import make_commonvoice, make_librispeech

tiny_sentences = asr_helpers.tiny_sentences  # the shared corpus fixture


def test_librispeech_reader(tmp_path):
    root = make_librispeech(tmp_path)
    dev = librispeech.read_split(root, "dev-clean")
    assert [u.transcript for u in dev] == ["HELLO WORLD", "GOOD MORNING TO YOU", "THE CAT'S HAT"]
    assert dev[0].id == "100-7-0000" and dev[0].speaker == "100" and dev[0].path.suffix == ".flac"
    with pytest.raises(FileNotFoundError, match="no such LibriSpeech split.*dev-clean"):
        librispeech.read_split(root, "dev-other")
    dev[1].path.unlink()
    with pytest.raises(FileNotFoundError, match=r"100-7-0002\.flac: listed in .*100-7\.trans\.txt:2 but missing"):
        librispeech.read_split(root, "dev-clean")


def test_commonvoice_reader_and_mp3_resampling(tmp_path):
    root = make_commonvoice(tmp_path)
    train = commonvoice.read_split(root, "train")
    assert [u.transcript for u in train][:2] == ["Hello, world!", "It's “fine”."]
    assert train[0].speaker == "client0" and train[0].path.parent.name == "clips"
    with pytest.raises(FileNotFoundError, match="no such Common Voice listing"):
        commonvoice.read_split(root, "validated")
    # Each split checks the other two for shared clips; still, the three splits read each listing once.
    commonvoice._listing_rows.cache_clear()
    for split in ("train", "dev", "test"):
        commonvoice.read_split(root, split)
    assert commonvoice._listing_rows.cache_info().misses == 3
    # An edited listing is read again: a clip of train added to test is a leak.
    with (root / "test.tsv").open("a") as listing:
        listing.write(f"client9\t{train[0].path.name}\tsid9\tleak\t2\t0\t\t\t\n")
    with pytest.raises(ListedPathError, match="listed in both test.tsv and train.tsv"):
        commonvoice.read_split(root, "test")
    (root / "dev.tsv").write_text("path\tsentence\nx.mp3\thi\n")
    with pytest.raises(ValueError, match=r"dev\.tsv: missing column\(s\) \['client_id'\]"):
        commonvoice.read_split(root, "dev")


def test_data_module_on_commonvoice_normalises_and_resamples(tmp_path):
    root = make_commonvoice(tmp_path)
    data = ASRDataModule(root=str(root), corpus="commonvoice", batch_size=4)
    data.setup("fit")
    train = data.datasets["train"]
    assert sorted(u.transcript for u in train.utterances)[:3] == ["good morning", "hello world", "it's fine"]
    audio, target, item = train[0]
    seconds = train.utterances[0].seconds
    assert abs(audio.numel() - seconds * 16000) < 0.02 * 16000  # 48 kHz MP3 read at 16 kHz
    assert Alphabet().decode(target) == train.utterances[0].transcript


def test_bad_transcripts_and_audio_name_the_file(tmp_path):
    root = make_librispeech(tmp_path)
    listing = root / "test-clean" / "110" / "7" / "110-7.trans.txt"
    listing.write_text(listing.read_text().replace("OPEN THE DOOR", "OPEN DOOR 42"))
    data = ASRDataModule(root=str(root), corpus="librispeech")
    with pytest.raises(TranscriptError, match=r"110-7-0000\.flac: transcript 'OPEN DOOR 42' has characters outside"):
        data.setup("test")
    broken = root / "test-clean" / "111" / "7" / "111-7-0001.flac"
    broken.write_bytes(b"not audio at all")
    data = ASRDataModule(root=str(root), corpus="librispeech", skip_bad_items=True)
    data.setup("test")
    assert [u.id for u in data.datasets["test"].utterances] == ["110-7-0002"]
    assert len(data.skipped) == 2 and any("111-7-0001.flac: unreadable audio" in m for m in data.skipped)
    listing.write_text(listing.read_text().replace("OPEN DOOR 42", "OPEN THE DOOR"))
    with pytest.raises(AudioError, match=r"111-7-0001\.flac: unreadable audio"):
        ASRDataModule(root=str(root), corpus="librispeech").setup("test")


def test_length_filters_report_what_they_drop(tmp_path):
    root = make_librispeech(tmp_path)
    data = ASRDataModule(root=str(root), corpus="librispeech", max_seconds=1.1, max_chars_per_second=13.5)
    data.setup("validate")
    kept = [u.id for u in data.datasets["val"].utterances]
    # 0.8 s of "hello world" is 13.75 chars/s (too fast); 1.0 s of "the cat's hat" is 13 (kept); 1.2 s is too long
    assert kept == ["101-7-0001"]
    dropped = data.dropped["val"]
    assert len(dropped) == 2 and any("100-7-0000.flac: 11 characters in 0.80 s" in m for m in dropped)
    assert any("100-7-0002.flac: 1.2 s is longer than max_seconds=1.1" in m for m in dropped)


def test_bucket_sampler_groups_similar_durations():
    durations = [5.0, 1.0, 3.0, 2.0, 4.0, 1.5, 2.5]
    plain = list(BucketBatchSampler(durations, 3, shuffle=False))
    assert plain == [[1, 5, 3], [6, 2, 4], [0]]
    shuffled = BucketBatchSampler(durations, 3, shuffle=True, seed=1)
    epochs = []
    for epoch in range(4):
        shuffled.set_epoch(epoch)
        epochs.append(list(shuffled))
        assert sorted(map(sorted, epochs[-1])) == sorted(map(sorted, plain))  # same buckets, new order
    assert len({str(e) for e in epochs}) > 1
    ranks = [list(BucketBatchSampler(durations, 2, shuffle=True, num_replicas=2, rank=r)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 2
    assert {i for batches in ranks for b in batches for i in b} == set(range(7))


def test_collate_pads_audio_and_targets():
    alphabet = Alphabet()
    items = [(torch.ones(5), alphabet.encode("ab"), "x"), (torch.ones(8), alphabet.encode("abc d"), "y")]
    batch = collate(items)
    assert isinstance(batch, ASRBatch) and batch.ids == ["x", "y"]
    assert batch.waveforms.shape == (2, 8) and batch.waveforms[0, 5:].abs().sum() == 0
    assert batch.lengths.tolist() == [5, 8] and batch.target_lengths.tolist() == [2, 5]
    assert batch.targets.shape == (2, 5) and batch.targets[0, 2:].abs().sum() == 0


def test_synthetic_data_module_batches(tiny_sentences):
    data = ASRDataModule(root=str(tiny_sentences), batch_size=8)
    data.setup("fit")
    assert len(data.datasets["train"]) == 32 and len(data.datasets["val"]) == 4
    batches = list(data.val_dataloader())
    batch = batches[0]
    assert batch.waveforms.shape[0] == 4 and int(batch.lengths.max()) == batch.waveforms.shape[1]
    durations = [int(n) for b in data.train_dataloader() for n in b.lengths]
    assert len(durations) == 32
    # bucketing: padding is a small share of the audio in a batch
    padded = sum(b.waveforms.numel() for b in data.train_dataloader())
    assert padded < 1.25 * sum(durations)


def test_voice_augmentation_changes_training_batches_only(tiny_sentences):
    augment = VoiceAugment(speed_probability=1.0, colour_probability=0.0, reverb_probability=0.0, codec_probability=0.0)
    data = ASRDataModule(root=str(tiny_sentences), batch_size=8, voice_augment=augment)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    data.trainer = SimpleNamespace(training=False)
    assert data.on_after_batch_transfer(batch, 0) is batch
    data.trainer = SimpleNamespace(training=True)
    torch.manual_seed(0)
    augmented = data.on_after_batch_transfer(batch, 0)
    assert augmented.ids == batch.ids and torch.equal(augmented.targets, batch.targets)
    assert not torch.equal(augmented.lengths, batch.lengths) and augmented.waveforms.shape[1] >= int(augmented.lengths.max())


def test_dataset_reads_audio_on_access(tmp_path):
    path = tmp_path / "clip.wav"
    sf.write(path, torch.zeros(800).numpy() + 0.1, 8000)
    dataset = UtteranceDataset([Utterance("clip", path, "hi", seconds=0.1)], Alphabet(), AudioPolicy())
    audio, target, item = dataset[0]
    assert audio.numel() == 1600 and item == "clip" and target.tolist() == [10, 11]
