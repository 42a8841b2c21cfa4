
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lit_app.checkpoints import CheckpointError, load_module
from lit_app.data.vocab import task_labels
from lit_app.models.kws import LEGACY_SETTINGS, KWSModule
from lit_app.nets.kws_cnn import CnnTradFpool3
from lit_app.nets.kws_resnet import Res8
from tests.conftest import save_checkpoint


def tensorflow_conv_model(net: CnnTradFpool3, features: torch.Tensor) -> torch.Tensor:
    """TensorFlow's speech-commands ``create_conv_model`` (inference) with ``net``'s weights, written out in its
    own order: conv 20x8 'SAME' + ReLU, 2x2 max-pool of stride 2, conv 10x4 'SAME' + ReLU, no second pool,
    fully connected. TF's 'SAME' pads ``k - 1`` in all, the odd one at the bottom/right."""
    conv1, conv2 = net.features[1], net.features[7]
    x = F.pad(features.unsqueeze(1), (3, 4, 9, 10))  # kernel 20 x 8: rows 9 + 10, columns 3 + 4
    x = F.max_pool2d(torch.relu(F.conv2d(x, conv1.weight, conv1.bias)), 2, 2, ceil_mode=True)
    x = torch.relu(F.conv2d(F.pad(x, (1, 2, 4, 5)), conv2.weight, conv2.bias))  # kernel 10 x 4
    return net.classifier(x.flatten(1))


def test_default_victim_is_tensorflows_conv_model():
    model = KWSModule().eval()
    assert model.front_end.num_frames(16000) == 98  # 1 + (16000 - 480) // 160, whole 30 ms windows only
    layers = [m for m in model.net.modules() if not isinstance(m, (nn.Sequential, CnnTradFpool3, nn.Identity,
                                                                      nn.ZeroPad2d))]
    described = [(type(m).__name__, getattr(m, "kernel_size", None), getattr(m, "out_channels", None)) for m in layers]
    # ReLU follows the pool here (the same output, cheaper); there is no second pool and no batch norm.
    assert described == [("Conv2d", (20, 8), 64), ("Dropout", None, None), ("MaxPool2d", 2, None), ("ReLU", None, None),
                         ("Conv2d", (10, 4), 64), ("Dropout", None, None), ("ReLU", None, None), ("Linear", None, None)]
    assert model.net.classifier.in_features == 49 * 20 * 64 and model.net.classifier.out_features == 12
    assert sum(p.numel() for p in model.net.parameters()) == 926_860
    features = model.features(torch.randn(3, 16000) * 0.1)
    assert features.shape == (3, 98, 40)
    assert torch.allclose(model.net(features), tensorflow_conv_model(model.net, features), atol=1e-5)


@pytest.mark.parametrize(("options", "params"), [({}, 926_860), ({"second_pool": True}, 366_220),
                                                 ({"padding": "valid"}, 507_532),
                                                 ({"padding": "valid", "second_pool": True}, 260_236)])
def test_departures_are_options_with_their_sizes(options, params):
    net = CnnTradFpool3(12, **options)
    assert net(torch.randn(2, 98, 40)).shape == (2, 12)
    assert sum(p.numel() for p in net.parameters()) == params
    assert sum(isinstance(m, nn.BatchNorm2d) for m in CnnTradFpool3(12, batch_norm=True, **options).modules()) == 2


def test_energy_above_4_khz_does_not_change_the_victims_features():
    """Noise in the victim's band, then with loud noise above 4.5 kHz added (the window's leakage across 500 Hz is
    negligible)."""
    model = KWSModule().eval()
    noise = torch.fft.rfft(torch.randn(16000, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    freqs = torch.fft.rfftfreq(16000, 1 / 16000)
    in_band, above = (torch.fft.irfft(noise * mask, 16000) for mask in (freqs < 4000, freqs > 4500))
    clean = (0.1 * in_band / in_band.std()).float().unsqueeze(0)
    loud = (0.1 * in_band / in_band.std() + 0.3 * above / above.std()).float().unsqueeze(0)
    assert torch.allclose(model.front_end(clean), model.front_end(loud), atol=1e-3)
    # The earlier front end (mel bands up to 8 kHz) does see it: the check can fail.
    legacy = KWSModule(**LEGACY_SETTINGS).eval()
    assert (legacy.front_end(clean) - legacy.front_end(loud)).abs().max() > 1.0


@pytest.mark.parametrize("utterance_norm", ["mean", "mean_var"])
def test_per_clip_cepstral_normalisation_removes_a_fixed_gain(utterance_norm):
    """A quieter copy of a clip (a gain the same in every band, as a channel or level change is) adds a constant to
    every frame's log-mel energies; per-clip normalisation removes it, plain features keep it."""
    speech = torch.randn(1, 16000, generator=torch.Generator().manual_seed(0)) * torch.linspace(0.05, 0.3, 16000)
    plain, normalised = KWSModule().eval(), KWSModule(utterance_norm=utterance_norm).eval()
    assert (plain.features(speech) - plain.features(0.2 * speech)).abs().max() > 1.0
    assert torch.allclose(normalised.features(speech), normalised.features(0.2 * speech), atol=1e-3)
    if utterance_norm == "mean_var":
        cepstra = normalised.features(speech)  # [batch, frames, coefficients]; feature_norm is the identity at init
        assert torch.allclose(cepstra.std(1, unbiased=False), torch.ones(1, 40), atol=1e-3)
    assert "per-clip cepstral mean" in normalised.describe()
    with pytest.raises(ValueError, match="utterance_norm"):
        KWSModule(utterance_norm="cmvn")


def test_fewer_coefficients_than_mel_bands_keep_the_first_coefficients():
    speech = torch.randn(2, 16000, generator=torch.Generator().manual_seed(0)) * 0.1
    envelope, every = KWSModule(n_mfcc=20, n_mels=40, feature_norm=False).eval(), KWSModule(feature_norm=False).eval()
    assert torch.allclose(envelope.features(speech), every.features(speech)[..., :20], atol=1e-5)
    assert envelope(speech).shape == (2, 12)
    assert "20 MFCC of 40 mel bands" in envelope.describe() and "mel bands" not in every.describe()


@pytest.mark.parametrize("second_pool", [False, True])
def test_pooling_before_relu_equals_the_reference_order_in_training_too(second_pool):
    """ReLU after max-pooling (cheaper) gives what conv -> ReLU -> dropout -> pool gives, dropout draw included."""
    net = CnnTradFpool3(12, padding="valid", batch_norm=True, dropout=0.3, second_pool=second_pool).train()
    conv1, bn1, _, _, _, conv2, bn2 = (net.features[i] for i in (1, 2, 3, 4, 5, 7, 8))
    pool = torch.nn.MaxPool2d(2, ceil_mode=True)
    features = torch.randn(4, 98, 40, requires_grad=True)

    def reference_forward(x):
        x = x.unsqueeze(1).contiguous(memory_format=net.memory_format)  # the same layout: the same dropout draw
        x = pool(torch.nn.functional.dropout(torch.relu(bn1(conv1(x))), 0.3))
        x = torch.nn.functional.dropout(torch.relu(bn2(conv2(x))), 0.3)
        return net.classifier((pool(x) if second_pool else x).flatten(1))

    torch.manual_seed(5)
    expected = reference_forward(features)
    torch.manual_seed(5)
    assert torch.equal(net(features), expected)


def test_channels_last_activations_change_speed_not_results(monkeypatch):
    net = CnnTradFpool3(12, padding="valid", batch_norm=True).eval()
    features = torch.randn(3, 98, 40, requires_grad=True)
    fast = net(features)
    (fast_grad,) = torch.autograd.grad(fast.sum(), features)
    monkeypatch.setattr(CnnTradFpool3, "memory_format", torch.contiguous_format)
    plain = net(features)
    (plain_grad,) = torch.autograd.grad(plain.sum(), features)
    assert torch.allclose(fast, plain, atol=1e-5) and torch.allclose(fast_grad, plain_grad, atol=1e-5)


def test_module_takes_waveforms_and_is_differentiable():
    model = KWSModule(labels=task_labels("words35")).eval()
    wave = (torch.randn(3, 16000) * 0.1).requires_grad_()
    logits = model(wave)
    assert logits.shape == (3, 35)
    logits[:, 0].sum().backward()
    assert wave.grad.abs().sum() > 0


def test_checkpoint_alone_rebuilds_the_victim(tmp_path):
    model = KWSModule(labels=task_labels("words35"), n_mfcc=20, padding="valid").eval()
    path = tmp_path / "victim.ckpt"
    save_checkpoint(model, path)
    loaded = load_module(path, KWSModule)
    assert loaded.labels == model.labels and loaded.front_end.n_mfcc == 20 and not loaded.training
    wave = torch.randn(2, 16000) * 0.1
    assert torch.allclose(loaded(wave), model(wave), atol=1e-5)


def test_checkpoint_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(CheckpointError, match="missing.ckpt: checkpoint not found"):
        load_module(tmp_path / "missing.ckpt")
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="corrupt.ckpt: not a readable PyTorch checkpoint"):
        load_module(corrupt)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not written by lit-app"):
        load_module(foreign)

    class OtherModel(KWSModule):
        pass

    good = tmp_path / "kws.ckpt"
    save_checkpoint(KWSModule(), good)
    with pytest.raises(CheckpointError, match="holds a KWSModule, but a OtherModel is needed"):
        load_module(good, OtherModel)


def test_checkpoint_of_another_task_is_refused(tmp_path):
    path = tmp_path / "kws.ckpt"
    save_checkpoint(KWSModule(labels=task_labels("words35")), path)
    model = KWSModule(labels=task_labels("keywords12"))
    with pytest.raises(ValueError, match="trained on labels"):
        model.on_load_checkpoint(torch.load(path, weights_only=True))


def test_checkpoint_from_before_the_faithful_settings_loads_as_the_network_it_was(tmp_path):
    """Checkpoints written before f_max, mel_power, centred_frames and second_pool existed hold no such hparams:
    they are rebuilt with the settings they were trained with, not with today's defaults."""
    old = KWSModule(padding="valid", batch_norm=True, **LEGACY_SETTINGS).eval()
    path = save_checkpoint(old, tmp_path / "old.ckpt")
    checkpoint = torch.load(path, weights_only=True)
    for key in LEGACY_SETTINGS:
        del checkpoint["hyper_parameters"][key]
    torch.save(checkpoint, path)
    loaded = load_module(path, KWSModule)
    assert loaded.front_end.num_frames(16000) == 101 and loaded.hparams.second_pool
    wave = torch.randn(2, 16000) * 0.1
    assert torch.allclose(loaded(wave), old(wave), atol=1e-5)


def test_resuming_a_checkpoint_of_another_network_names_the_settings(tmp_path):
    path = save_checkpoint(KWSModule(padding="valid", second_pool=True), tmp_path / "kws.ckpt")
    with pytest.raises(ValueError, match=r"padding='valid' \(this run: 'same'\), second_pool=True \(this run: False\)"):
        KWSModule().on_load_checkpoint(torch.load(path, weights_only=True))


def test_spec_augment_masks_training_features_only(monkeypatch):
    torch.manual_seed(0)
    module = KWSModule(freq_mask=7, time_mask=20, dropout=0.0)
    monkeypatch.setattr(module, "log", lambda *args, **kwargs: None)
    seen = []
    monkeypatch.setattr(module.net, "forward", lambda features: seen.append(features) or features.sum((1, 2))[:, None]
                        .expand(-1, 12))
    audio = torch.randn(16, 16000) * 0.1
    module.training_step((audio, torch.zeros(16, dtype=torch.long)), 0)
    module.eval()
    unmasked = module.features(audio)
    masked = seen[0]
    zeroed = (masked == 0) & (unmasked != 0)
    assert zeroed.any(2).any(1).float().mean() > 0.5  # most clips lose whole coefficients or frames
    assert torch.equal(module(audio), unmasked.sum((1, 2))[:, None].expand(-1, 12))  # no masks outside training


def test_res8_is_an_option_that_a_checkpoint_rebuilds(tmp_path):
    """Tang & Lin's res8 (ours as an option): 110k parameters, and it comes back from its checkpoint as res8."""
    model = KWSModule(network="res8", n_mfcc=20, n_mels=40).eval()
    assert isinstance(model.net, Res8) and 100_000 < sum(p.numel() for p in model.net.parameters()) < 120_000
    assert model.describe().startswith("keyword spotter: res8 (Tang & Lin) (12 labels; 20 MFCC of 40 mel bands")
    path = tmp_path / "res8.ckpt"
    save_checkpoint(model, path)
    loaded = load_module(path, KWSModule)
    wave = torch.randn(2, 16000) * 0.1
    assert isinstance(loaded.net, Res8) and torch.allclose(loaded(wave), model(wave), atol=1e-5)
    with pytest.raises(ValueError, match="network must be 'tf_conv' or 'res8'"):
        KWSModule(network="res15")


def test_mixstyle_and_mixup_are_training_options_that_keep_the_checkpoint(monkeypatch):
    """MixStyle (res8) and mixup (ours) change training batches only; the weights are those of a plain res8."""
    torch.manual_seed(0)
    module = KWSModule(network="res8", mixup_alpha=0.2, mixstyle_probability=1.0)
    plain = KWSModule(network="res8")
    assert module.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(module.state_dict())
    audio = torch.randn(16, 16000) * 0.1
    module.eval(), plain.eval()
    assert torch.equal(module(audio), plain(audio))
    monkeypatch.setattr(module, "log", lambda *args, **kwargs: None)
    module.train()
    seen = []
    forward = module.net.forward
    monkeypatch.setattr(module.net, "forward", lambda features: seen.append(features) or forward(features))
    monkeypatch.setattr(module.mixup, "sample", lambda: torch.tensor(0.25))
    target = torch.arange(16) % 12
    loss = module.training_step((audio, target), 0)
    features = module.features(audio)
    # Each clip is mixed a quarter of itself to three quarters of another clip of the batch.
    other = (seen[0] - 0.25 * features) / 0.75
    distances = torch.cdist(other.flatten(1), features.flatten(1))
    assert torch.allclose(distances.min(1).values, torch.zeros(16), atol=1e-3) and torch.isfinite(loss)
    with pytest.raises(ValueError, match="res8 only"):
        KWSModule(mixstyle_probability=0.5)
    with pytest.raises(ValueError, match="mixup_alpha"):
        KWSModule(mixup_alpha=-1.0)
