"""DeepSpeech networks and the LightningModule: shapes, lengths, gradients to the waveform, CTC feasibility."""

import pytest
import pytorch_lightning as pl
import torch

from lit_app.checkpoints import load_module
from lit_app.data.asr import ASRBatch
from lit_app.models.asr import DeepSpeechModule
from lit_app.nets.deepspeech import DeepSpeech, DeepSpeech2, stack_context
from lit_app.nets.feature_norm import standardise_per_clip
from lit_app.text import Alphabet
from tests import asr_helpers
from tests.conftest import QUIET_TRAINER

tiny_sentences = asr_helpers.tiny_sentences  # the shared corpus fixture

TINY = dict(n_hidden=32, n_mfcc=13, n_mels=20)


def test_stack_context_shapes_and_edges():
    x = torch.arange(12.0).view(1, 4, 3)  # 4 frames of 3 features
    y = stack_context(x, 1)
    assert y.shape == (1, 4, 9)
    assert y[0, 0].tolist() == [0, 0, 0, 0, 1, 2, 3, 4, 5]  # zeros before the first frame
    assert y[0, 2].tolist() == list(range(3, 12))
    assert torch.equal(stack_context(x, 0), x)


@pytest.mark.parametrize("rnn_type", ["rnn", "gru", "lstm"])
def test_deepspeech_ignores_padding(rnn_type):
    torch.manual_seed(0)
    net = DeepSpeech(n_features=5, n_classes=29, n_hidden=16, context=2, rnn_type=rnn_type).eval()
    short, long = torch.randn(1, 7, 5), torch.randn(1, 12, 5)
    batch = torch.cat([torch.nn.functional.pad(short, (0, 0, 0, 5)), long])
    out, lengths = net(batch, torch.tensor([7, 12]))
    alone, _ = net(short, torch.tensor([7]))
    assert out.shape == (2, 12, 29) and lengths.tolist() == [7, 12]
    assert torch.allclose(out[0, :7], alone[0], atol=1e-5)  # the backward direction never saw the padding
    assert torch.allclose(out.exp().sum(-1), torch.ones(2, 12), atol=1e-5)


def test_deepspeech2_halves_the_frame_rate():
    net = DeepSpeech2(n_features=20, n_classes=29, n_hidden=16, rnn_layers=2, conv_channels=4).eval()
    out, lengths = net(torch.randn(3, 50, 20), torch.tensor([50, 33, 8]))
    assert lengths.tolist() == [25, 17, 4] and out.shape == (3, 25, 29)


def test_paper_size_parameter_count():
    # 26 MFCC x 11 frames into 2048 hidden units: the 30 M parameters of torchaudio's DeepSpeech layout.
    counts = DeepSpeechModule(n_hidden=2048, context=5, n_mfcc=26).parameter_counts()
    assert counts["total"] == 30_021_661 and counts["rnn"] == 2 * (2 * 2048 * 2048 + 2 * 2048)


@pytest.mark.parametrize("architecture", ["deepspeech", "deepspeech2"])
def test_module_shapes_and_lengths(architecture):
    model = DeepSpeechModule(architecture=architecture, rnn_layers=1, conv_channels=4, hop_ms=10.0, **TINY).eval()
    lengths = torch.tensor([16000, 8000, 3200])
    log_probs, frames = model(torch.randn(3, 16000) * 0.1, lengths)
    expected = lengths // 160 + 1
    if architecture == "deepspeech2":
        expected = (expected - 1) // 2 + 1
    assert frames.tolist() == expected.tolist() == model.output_lengths(lengths).tolist()
    assert log_probs.shape == (3, int(expected.max()), 29)


def test_features_are_normalised_per_utterance_and_masked():
    feats = torch.randn(2, 10, 4) * 5 + 3
    out = standardise_per_clip(feats, torch.tensor([10, 6]), frames_dim=1)
    assert torch.allclose(out[0].mean(0), torch.zeros(4), atol=1e-5)
    assert torch.allclose(out[1, :6].std(0, unbiased=False), torch.ones(4), atol=1e-3)
    assert out[1, 6:].abs().max() == 0
    # the level of a clip does not change its features
    model = DeepSpeechModule(**TINY)
    wave = torch.randn(1, 8000) * 0.1
    lengths = torch.tensor([8000])
    assert torch.allclose(model.features(wave, lengths), model.features(wave * 0.25, lengths), atol=1e-3)


def test_gradient_reaches_the_waveform():
    """The C&W attack differentiates the CTC loss of a target phrase with respect to the audio."""
    model = DeepSpeechModule(**TINY).eval()
    wave = (torch.randn(2, 12000) * 0.1).requires_grad_()
    targets, target_lengths = model.encode(["open the door", "stop"])
    log_probs, frames = model(wave, torch.tensor([12000, 9000]))
    loss = model.ctc_loss(log_probs, frames, targets, target_lengths)
    loss.backward()
    assert torch.isfinite(loss) and wave.grad is not None and torch.isfinite(wave.grad).all()
    assert wave.grad[0].abs().sum() > 0
    # padding gets no gradient beyond the half FFT window (256 samples) that the last valid frame reaches into
    assert wave.grad[1, 9000 + 256 :].abs().sum() == 0 and wave.grad[1, :9000].abs().sum() > 0


def make_batch(model, texts, samples):
    targets, target_lengths = model.encode(texts)
    lengths = torch.tensor(samples)
    waves = torch.randn(len(texts), max(samples)) * 0.1 * (torch.arange(max(samples)) < lengths.unsqueeze(1))
    return ASRBatch(waves, lengths, targets, target_lengths, [f"utt{i}" for i in range(len(texts))])


def test_infeasible_utterances_are_reported_and_left_out(recwarn):
    model = DeepSpeechModule(hop_ms=20.0, **TINY)
    model.log = lambda *args, **kwargs: None  # no Trainer here
    # 0.1 s at a 20 ms hop is 6 frames: far too few for 18 characters (19 frames with the blank "ff" needs); 1 s (51 frames) is plenty.
    batch = make_batch(model, ["turn off the light", "stop"], [1600, 16000])
    loss = model.training_step(batch, 0)
    assert loss is not None and torch.isfinite(loss)
    assert list(model.infeasible) == ["utt0"]
    message = model.infeasible["utt0"]
    assert "needs at least 19 CTC frames" in message and "gives 6" in message and "left out of the train loss" in message
    assert any("utt0" in str(w.message) for w in recwarn)
    # only the feasible utterance counts: the loss equals its own
    single = ASRBatch(batch.waveforms[1:], batch.lengths[1:], batch.targets[1:, :4], batch.target_lengths[1:], ["utt1"])
    assert torch.allclose(loss, model.training_step(single, 0))
    # a batch with nothing feasible takes no step
    assert model.training_step(make_batch(model, ["a very long sentence"], [800]), 0) is None


def test_checkpoint_rebuilds_the_victim_from_its_path(tmp_path, tiny_sentences):
    from lit_app.data.asr import ASRDataModule

    model = DeepSpeechModule(n_hidden=24, n_mfcc=10, n_mels=16, context=2, hop_ms=20.0, rnn_type="gru", lr=1e-3)
    data = ASRDataModule(root=str(tiny_sentences), batch_size=4)
    trainer = pl.Trainer(max_steps=2, limit_val_batches=1, default_root_dir=tmp_path, **QUIET_TRAINER)
    trainer.fit(model, data)
    path = tmp_path / "victim.ckpt"
    trainer.save_checkpoint(path)
    loaded = load_module(path, DeepSpeechModule)
    assert not loaded.training and loaded.alphabet == Alphabet()
    assert loaded.hparams.n_hidden == 24 and loaded.hparams.rnn_type == "gru" and loaded.hop_length == 320
    wave = torch.randn(1, 16000) * 0.1
    model.eval()
    assert torch.allclose(loaded(wave)[0], model(wave)[0], atol=1e-6)



# ---- Mozilla DeepSpeech 0.1, the network Carlini & Wagner attacked -----------------------------------------------------

MOZILLA_TINY = dict(architecture="mozilla_0.1", n_hidden=24, n_mels=26, hop_ms=20.0, context=9)


def test_mozilla_net_concatenates_both_lstm_directions_and_ignores_padding():
    from lit_app.nets.deepspeech import MozillaDeepSpeech

    torch.manual_seed(0)
    net = MozillaDeepSpeech(n_features=5, n_classes=29, n_hidden=16, context=9).eval()
    assert net.fc1[0].in_features == 5 * 19 and net.fc5[0].in_features == 2 * 16 and net.lstm.bidirectional
    assert torch.all(net.lstm.bias_ih_l0[16:32] == 1) and torch.all(net.lstm.bias_hh_l0_reverse[16:32] == 0)
    short, long = torch.randn(1, 7, 5), torch.randn(1, 12, 5)
    out, lengths = net(torch.cat([torch.nn.functional.pad(short, (0, 0, 0, 5)), long]), torch.tensor([7, 12]))
    assert out.shape == (2, 12, 29) and lengths.tolist() == [7, 12]
    assert torch.allclose(out[0, :7], net(short, torch.tensor([7]))[0][0], atol=1e-5)
    # The hidden layers' ReLU is capped at 20, as in the release.
    hidden = net.fc1(stack_context(long * 100, 9))
    assert hidden.min() >= 0 and hidden.max() <= 20 and (hidden == 20).any()


def test_mozilla_release_size_parameter_count():
    from lit_app.nets.deepspeech import MozillaDeepSpeech

    with torch.device("meta"):  # counts without allocating 340 MB
        net = MozillaDeepSpeech(n_features=26, n_classes=29, n_hidden=2048, context=9)
    lstm = 2 * (4 * 2048 * (2048 + 2048) + 2 * 4 * 2048)  # PyTorch keeps two bias vectors per gate, TensorFlow one
    assert sum(p.numel() for p in net.lstm.parameters()) == lstm
    assert sum(p.numel() for p in net.parameters()) == (26 * 19 + 1) * 2048 + 2 * 2049 * 2048 + lstm + 4097 * 2048 + 2049 * 29


def test_mozilla_module_shapes_loss_and_gradient_to_the_waveform():
    torch.manual_seed(0)
    model = DeepSpeechModule(**MOZILLA_TINY).eval()
    assert model.hparams.rnn_type == "lstm"  # the release's cell, whatever rnn_type said
    lengths = torch.tensor([16000, 9000])
    wave = (torch.randn(2, 16000) * 0.1 * (torch.arange(16000) < lengths.unsqueeze(1))).requires_grad_()
    log_probs, frames = model(wave, lengths)
    assert frames.tolist() == [51, 29] == model.output_lengths(lengths).tolist()  # one frame per 20 ms
    assert log_probs.shape == (2, 51, 29)
    targets, target_lengths = model.encode(["open the door", "stop"])
    loss = model.ctc_loss(log_probs, frames, targets, target_lengths)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(wave.grad).all() and wave.grad[1, :9000].abs().sum() > 0


def test_a_20_ms_hop_gives_the_mozilla_release_s_every_second_10_ms_frame():
    from lit_app.audio.features import MFCC

    wave = torch.randn(2, 8000)
    every_second = MFCC(16000, n_mfcc=26, n_mels=26, win_ms=25.0, hop_ms=10.0)(wave)[..., ::2]
    assert torch.allclose(MFCC(16000, n_mfcc=26, n_mels=26, win_ms=25.0, hop_ms=20.0)(wave), every_second, atol=1e-4)


def test_mozilla_architecture_refuses_another_front_end_and_names_the_fix():
    with pytest.raises(ValueError, match=r"hop_ms: 20.0 \(got 10.0\).*context: 9 \(got 5\).*mozilla_demo.yaml"):
        DeepSpeechModule(architecture="mozilla_0.1", n_mels=26)


def test_mozilla_checkpoint_says_which_victim_it_is(tmp_path):
    from tests.conftest import save_checkpoint

    torch.manual_seed(0)
    model = DeepSpeechModule(**MOZILLA_TINY).eval()
    loaded = load_module(save_checkpoint(model, tmp_path / "mozilla.ckpt"), DeepSpeechModule)
    assert loaded.hparams.architecture == "mozilla_0.1" and type(loaded.net).__name__ == "MozillaDeepSpeech"
    assert loaded.describe() == "DeepSpeech mozilla_0.1 (lstm, 24 hidden; 26 mfcc every 20 ms over 25 ms, context 9)"
    wave = torch.randn(1, 12000) * 0.1
    assert torch.allclose(loaded(wave)[0], model(wave)[0], atol=1e-6)
