"""The detector: the paper's CNN layer by layer, input modes, block aggregation, metrics and checkpoints."""

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics.functional.classification import binary_auroc

from lit_app.advsets.detection import collate_detection
from lit_app.audio.noise import add_white_noise_at_snr
from lit_app.checkpoints import CheckpointError, load_module
from lit_app.metrics.detection import BinaryEER, equal_error_rate, seed_mean_auroc_interval
from lit_app.models.detector import DetectorModule, aggregate_blocks, split_into_blocks
from lit_app.models.kws import KWSModule
from lit_app.nets.detector_cnn import PaperCNN, ResCNN
from lit_app.nets.feature_norm import MaskedFeatureNorm
from tests.conftest import QUIET_TRAINER

BLOCKS = dict(n_coefficients=20, win_ms=32.0, hop_ms=16.0, input_mode="blocks")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def test_paper_cnn_parameter_count_and_layers():
    net = PaperCNN(698, 40)
    assert sum(p.numel() for p in net.parameters()) == 7_131_938  # "about 7.1 M", nearly all in Dense 128
    assert net.classifier[0].weight.numel() == 128 * 32 * 347 * 5
    kinds = [type(m).__name__ for m in net.features]
    assert kinds == ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "UnitMaxPool2d", "Conv2d", "SELU", "MaxPool2d"]  # then Flatten
    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.padding) for c in convs] == [(64, (2, 2), (0, 0)), (64, (2, 2), (0, 0)), (32, (2, 2), (0, 0))]
    pools = [m.kernel_size for m in net.features if isinstance(m, nn.MaxPool2d)]
    assert pools == [(1, 3), (1, 1), 2]
    maps = torch.randn(3, 64, 29, 6)  # the (1, 1) pool skips PyTorch's kernel, which would return the same map
    assert torch.equal(net.features[5](maps), nn.MaxPool2d((1, 1))(maps))
    assert not any(isinstance(m, (nn.Dropout, nn.BatchNorm2d)) for m in net.modules())
    assert net(torch.randn(2, 698, 40)).shape == (2, 2)
    # The follow-up's block input: 31 frames x 20 coefficients.
    assert PaperCNN(31, 20)(torch.randn(2, 31, 20)).shape == (2, 2)


@pytest.mark.parametrize("valid_frames", [(97, 60, 30), (96, 1, 0), (0, 0, 0), (694, 3, 3), (698, 698, 10)])
def test_paper_cnn_computes_the_zero_padding_once_with_the_same_result(valid_frames):
    torch.manual_seed(0)
    net = PaperCNN(698, 40)
    maps = torch.randn(len(valid_frames), 698, 40)
    for example, frames in enumerate(valid_frames):
        maps[example, frames:] = 0
    maps.requires_grad_(True)
    shortcut = net(maps)
    whole_map = net.classifier(net.features(maps.unsqueeze(1)).flatten(1))
    assert torch.allclose(shortcut, whole_map, atol=1e-6)
    fast = torch.autograd.grad(shortcut.sum(), [maps, *net.parameters()])
    reference = torch.autograd.grad(whole_map.sum(), [maps, *net.parameters()])
    # The trailing zero frames are padding, which gets no gradient; every frame up to the last non-zero one does.
    last = max(valid_frames)
    fast, reference = [fast[0][:, :last], *fast[1:]], [reference[0][:, :last], *reference[1:]]
    for ours, theirs in zip(fast, reference):
        scale = theirs.abs().max().item() if theirs.numel() else 1.0
        assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-5 * scale)


def test_paper_detector_audio_gradient_is_unchanged_by_the_padding_shortcut(monkeypatch):
    torch.manual_seed(0)
    detector = DetectorModule(feature="mfcc", feature_norm="none", max_frames=698).eval()
    audio, lengths = torch.randn(2, 16000) * 0.1, torch.tensor([16000, 9000])

    def audio_gradient() -> torch.Tensor:
        clips = audio.clone().requires_grad_(True)
        detector.score(clips, lengths).sum().backward()
        return clips.grad

    shortcut = audio_gradient()
    monkeypatch.setattr(detector.net, "feature_maps", detector.net.features)
    assert torch.allclose(shortcut, audio_gradient(), rtol=1e-4, atol=1e-6 * shortcut.abs().max().item())


def test_detector_paper_configuration_holds_the_paper_cnn():
    detector = DetectorModule(backbone="paper", max_frames=698, n_coefficients=40)
    assert sum(p.numel() for p in detector.net.parameters()) == 7_131_938


def test_rescnn_ignores_padding():
    torch.manual_seed(0)
    net = ResCNN(20).eval()
    short = torch.randn(1, 37, 20)
    padded = torch.cat([short, torch.zeros(1, 40, 20)], dim=1)
    assert torch.allclose(net(short, torch.tensor([37])), net(padded, torch.tensor([37])), atol=1e-5)


def test_split_into_blocks():
    audio = torch.arange(1, 21, dtype=torch.float32).view(2, 10)
    blocks, lengths, owner = split_into_blocks(audio, torch.tensor([10, 3]), block=4, hop=4)
    assert owner.tolist() == [0, 0, 0, 1]
    assert lengths.tolist() == [4, 4, 2, 3]
    assert blocks[2].tolist() == [9.0, 10.0, 0.0, 0.0] and blocks[3].tolist() == [11.0, 12.0, 13.0, 0.0]
    # a clip shorter than a block still has one block
    _, _, owner = split_into_blocks(torch.ones(1, 2), torch.tensor([2]), block=4, hop=4)
    assert owner.tolist() == [0]


def test_aggregate_blocks():
    p = torch.tensor([0.2, 0.6, 0.9, 0.3])
    block_logits = torch.stack([torch.zeros(4), torch.log(p / (1 - p))], dim=1)
    owner = torch.tensor([0, 0, 0, 1])
    mean = aggregate_blocks(block_logits, owner, 2, "mean").softmax(-1)[:, 1]
    assert torch.allclose(mean, torch.tensor([(0.2 + 0.6 + 0.9) / 3, 0.3]), atol=1e-6)
    peak = aggregate_blocks(block_logits, owner, 2, "max").softmax(-1)[:, 1]
    assert torch.allclose(peak, torch.tensor([0.9, 0.3]), atol=1e-6)
    log_odds = torch.log(p / (1 - p))
    geometric = aggregate_blocks(block_logits, owner, 2, "logit_mean").softmax(-1)[:, 1]
    assert torch.allclose(geometric, torch.sigmoid(torch.stack([log_odds[:3].mean(), log_odds[3]])), atol=1e-6)


@pytest.mark.parametrize("backbone", ["paper", "rescnn"])
@pytest.mark.parametrize("mode", ["utterance", "blocks"])
def test_forward_and_gradient_to_the_waveform(backbone, mode):
    detector = DetectorModule(backbone=backbone, input_mode=mode, n_coefficients=20, win_ms=32, hop_ms=16, max_frames=80)
    audio = (torch.randn(3, 20000) * 0.05).requires_grad_()
    lengths = torch.tensor([20000, 9000, 300])
    scores = detector.score(audio, lengths)
    assert scores.shape == (3,) and ((scores > 0) & (scores < 1)).all()
    scores.sum().backward()
    assert torch.isfinite(audio.grad).all() and audio.grad[0].abs().sum() > 0
    # padding beyond a clip's length has no influence on its score
    assert audio.grad[2, 300:].abs().max() == 0


def test_block_score_does_not_depend_on_batch_padding():
    detector = DetectorModule(backbone="paper", **BLOCKS).eval()
    clip = torch.randn(10000) * 0.05
    alone = detector.score(clip[None], torch.tensor([10000]))
    batch = collate_detection([(clip, 0), (torch.randn(30000) * 0.05, 1)])
    assert torch.allclose(alone, detector.score(batch.audio, batch.lengths)[:1], atol=1e-5)


def test_masked_feature_norm_pools_exact_statistics_and_skips_padding():
    norm = MaskedFeatureNorm(2, "global")
    torch.manual_seed(0)
    first, second = torch.randn(3, 2, 10) * 3 + 5, torch.randn(2, 2, 7) - 1
    norm(first, torch.tensor([10, 4, 6]))
    out = norm(torch.cat([second, torch.full((2, 2, 3), 100.0)], dim=2), torch.tensor([7, 2]))
    frames = torch.cat([first[0], first[1, :, :4], first[2, :, :6], second[0], second[1, :, :2]], dim=1).double()
    assert norm.frames_seen.item() == frames.shape[1]
    assert torch.allclose(norm.running_mean, frames.mean(1)) and torch.allclose(norm.running_var, frames.var(1, unbiased=False))
    assert out[0, :, 7:].abs().max() == 0 and out[1, :, 2:].abs().max() == 0
    instance = MaskedFeatureNorm(2, "instance")(torch.tensor([[[1.0, 3.0, 100.0], [2.0, 2.0, -50.0]]]), torch.tensor([2]))
    assert torch.allclose(instance[0, 0], torch.tensor([-1.0, 1.0, 0.0]), atol=1e-4) and instance[0, 1].abs().max() == 0


def test_equal_error_rate_on_a_known_score_set():
    # Normal scores 0.1..0.4, adversarial 0.35..0.8: at threshold 0.4 one of each class is wrong -> EER 1/4.
    metric = BinaryEER()
    metric.update(torch.tensor([0.1, 0.2, 0.3, 0.4, 0.35, 0.6, 0.7, 0.8]), torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]))
    assert metric.compute().item() == pytest.approx(0.25)
    # Interpolated crossing: the ROC segment (0, 0.5) -> (1, 1) meets fpr = 1 - tpr at fpr = 1/3.
    assert equal_error_rate(torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.0, 0.5, 1.0])).item() == pytest.approx(1 / 3)
    perfect, inverted = BinaryEER(), BinaryEER()
    perfect.update(torch.tensor([0.1, 0.9]), torch.tensor([0, 1]))
    inverted.update(torch.tensor([0.1, 0.9]), torch.tensor([1, 0]))
    assert perfect.compute().item() == 0.0 and inverted.compute().item() == 1.0


def test_bootstrap_interval_of_the_seed_mean_auroc():
    labels = torch.tensor([0] * 20 + [1] * 20)
    generator = torch.Generator().manual_seed(0)
    separated = torch.rand(3, 40, generator=generator) + labels * 0.7  # each seed's ROC-AUC near 0.95
    aurocs = [float(binary_auroc(scores, labels)) for scores in separated]
    low, high = seed_mean_auroc_interval(separated, labels)
    assert low < sum(aurocs) / 3 < high <= 1.0 and high - low < 0.2
    # Rankings are all it sees: the same scores as logits give the same interval; the draws are seeded.
    assert seed_mean_auroc_interval(separated * 50 - 30, labels) == (low, high)
    assert seed_mean_auroc_interval(labels.expand(2, -1).float(), labels) == (1.0, 1.0)
    chance = seed_mean_auroc_interval(torch.rand(3, 40, generator=generator), labels)
    assert chance[0] < 0.5 < chance[1]
    with pytest.raises(ValueError, match="one class"):
        seed_mean_auroc_interval(separated, torch.ones(40))


def tiny_loader(count: int = 16):
    generator = torch.Generator().manual_seed(0)
    examples = []
    for i in range(count):
        wave = torch.randn(6000 + 500 * (i % 4), generator=generator) * 0.05
        label = i % 2
        if label:  # a loud high-frequency perturbation: easy to learn in a few steps
            wave = wave + 0.05 * torch.sign(torch.sin(torch.arange(wave.numel()) * 2.9))
        examples.append((wave, label))
    return torch.utils.data.DataLoader(examples, batch_size=8, shuffle=False, collate_fn=collate_detection)


def test_fit_test_and_rebuild_from_checkpoint(tmp_path):
    pl.seed_everything(0)
    detector = DetectorModule(backbone="rescnn", feature="lfcc", lr=0.003, **BLOCKS)
    trainer = pl.Trainer(max_epochs=3, default_root_dir=tmp_path, **QUIET_TRAINER)
    trainer.fit(detector, tiny_loader(), tiny_loader())
    metrics = trainer.test(detector, tiny_loader(), verbose=False)[0]
    for name in ("acc", "auroc", "eer", "precision", "recall", "f1", "fpr"):
        assert 0.0 <= metrics[f"test/{name}"] <= 1.0
    assert metrics["test/auroc"] > 0.9
    assert (tmp_path / "test_roc.png").stat().st_size > 0 and (tmp_path / "test_confusion_matrix.png").stat().st_size > 0
    path = tmp_path / "detector.ckpt"
    trainer.save_checkpoint(path)
    rebuilt = load_module(path, DetectorModule)
    batch = next(iter(tiny_loader()))
    assert torch.allclose(rebuilt.score(batch.audio, batch.lengths), detector.eval().score(batch.audio, batch.lengths), atol=1e-5)
    assert rebuilt.hparams.feature == "lfcc" and rebuilt.input_mode == "blocks"
    with pytest.raises(CheckpointError, match="DetectorModule"):
        load_module(path, KWSModule)


def test_labels_must_be_the_detection_labels():
    assert DetectorModule(labels=["normal", "adversarial"]).labels == ["normal", "adversarial"]
    with pytest.raises(ValueError, match="normal"):
        DetectorModule(labels=["yes", "no"])


def test_noise_augmentation_hits_normal_clips_at_the_snr():
    torch.manual_seed(0)
    audio = torch.zeros(4, 8000)
    audio[:, :6000] = torch.randn(4, 6000) * 0.1
    lengths = torch.tensor([6000, 6000, 6000, 6000])
    noisy = add_white_noise_at_snr(audio, lengths, torch.tensor([10.0, 20.0, 30.0, 40.0]))
    delta = noisy - audio
    snr = 10 * torch.log10(audio.pow(2).sum(1) / delta.pow(2).sum(1))
    assert torch.allclose(snr, torch.tensor([10.0, 20.0, 30.0, 40.0]), atol=0.05) and delta[:, 6000:].abs().max() == 0
    detector = DetectorModule(noise_augment=1.0, noise_snr_db=(20.0, 20.0))
    augmented = detector.augment(audio, lengths, torch.tensor([0, 1, 0, 1]))
    assert torch.equal(augmented[1], audio[1]) and torch.equal(augmented[3], audio[3])
    assert not torch.equal(augmented[0], audio[0]) and not torch.equal(augmented[2], audio[2])
