"""The adaptive attacker: gradient attacks that also push the detector's score toward "normal"."""

import json

import pytest
import pytorch_lightning as pl
import torch

from lit_app.advsets.detection import collate_detection
from lit_app.attacks import PGD, ClassifierVictim
from lit_app.data.kws import KWSDataModule
from lit_app.defences import OverConfidence
from lit_app.experiments.adaptive import DETECTED, DetectorAwareVictim, run_adaptive
from lit_app.models.detector import DetectorModule
from lit_app.models.kws import KWSModule
from tests.conftest import CONFIGS, QUIET_TRAINER

SAMPLES = 4000


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def tones(count: int, seed: int) -> torch.Tensor:
    """Speech-like test signals: three random partials under a smooth envelope."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(SAMPLES) / 16000
    freqs = torch.rand(count, 3, 1, generator=generator) * 600 + 100
    envelope = torch.sin(torch.pi * t / t[-1]) ** 2
    return 0.1 * torch.sin(2 * torch.pi * freqs * t).sum(1) * envelope


def noise_detector() -> DetectorModule:
    """A detector trained to flag clips carrying uniform noise of PGD's size (256 int16 units)."""
    pl.seed_everything(0)
    clean = tones(64, 0)
    noisy = clean + (torch.rand(clean.shape, generator=torch.Generator().manual_seed(1)) * 2 - 1) * 256 / 32768
    loader = torch.utils.data.DataLoader([(w, 0) for w in clean] + [(w, 1) for w in noisy], batch_size=16, shuffle=True,
                                         collate_fn=collate_detection)
    detector = DetectorModule(feature="lfcc", backbone="paper", input_mode="utterance", n_coefficients=20, win_ms=32,
                              hop_ms=16, max_frames=14, lr=3e-3)
    pl.Trainer(max_epochs=4, **QUIET_TRAINER).fit(detector, loader)
    return detector.eval()


def test_adaptive_pgd_evades_a_detector_the_plain_attack_does_not():
    detector = noise_detector()
    clips, lengths = tones(16, 7), torch.full((16,), SAMPLES)
    assert (detector.score(clips, lengths) < 0.5).all()
    torch.manual_seed(0)
    victim = ClassifierVictim(KWSModule(labels=["a", "b", "c", "d"], clip_samples=SAMPLES, n_mfcc=20))
    targets = ["b" if p != "b" else "c" for p in victim.predict(clips, lengths)]
    attack = PGD(epsilon=256, step_size=32, iterations=30, random_start=False, check_every=5)

    def run(target_victim):
        output = attack(target_victim, clips, lengths, targets, seed=0)
        fooled = torch.tensor([p == t for p, t in zip(victim.predict(output.adversarial, lengths), targets)])
        detected = detector.score(output.adversarial, lengths) >= 0.5
        return fooled, detected, output

    fooled, detected, _ = run(victim)
    assert fooled.float().mean() >= 0.75 and detected[fooled].float().mean() >= 0.6
    aware = DetectorAwareVictim(victim, detector, weight=10.0)
    fooled_adaptive, detected_adaptive, output = run(aware)
    evaded = fooled_adaptive & ~detected_adaptive
    assert evaded.float().mean() >= 0.6 > (fooled & ~detected).float().mean()
    # success in the wrapped victim's eyes needs both: the attack's own results agree with the detector
    assert [r.success for r in output.results] == evaded.tolist()
    assert all(r.prediction.startswith(DETECTED) for r, d in zip(output.results, detected_adaptive) if d)
    # and the perturbation bound still holds
    assert (output.adversarial - clips).abs().max() * 32768 <= 256 + 0.5


def test_detector_loss_is_differentiable_through_the_front_end():
    detector = DetectorModule(feature="imfcc", backbone="rescnn", input_mode="blocks", n_coefficients=20, win_ms=32, hop_ms=16)
    victim = ClassifierVictim(KWSModule(labels=["a", "b"], clip_samples=SAMPLES, n_mfcc=20))
    aware = DetectorAwareVictim(victim, detector, weight=1.0)
    wave = tones(2, 3).requires_grad_()
    loss = aware.loss(wave, torch.full((2,), SAMPLES), aware.encode(["a", "b"]))
    loss.sum().backward()
    assert loss.shape == (2,) and torch.isfinite(wave.grad).all() and wave.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in detector.parameters())


def test_an_attacker_who_knows_the_check_keeps_the_victim_less_confident():
    torch.manual_seed(0)
    victim = ClassifierVictim(KWSModule(labels=["a", "b", "c", "d"], clip_samples=SAMPLES, n_mfcc=20))
    check = OverConfidence(victim, tones(48, 11), quantile=0.995, statistic="flatness")
    clips, lengths = tones(8, 7), torch.full((8,), SAMPLES)
    targets = ["b" if p != "b" else "c" for p in victim.predict(clips, lengths)]
    classes = victim.encode(targets)[0]
    detector = DetectorModule(backbone="paper", input_mode="blocks", n_coefficients=20, win_ms=32, hop_ms=16)
    attack = PGD(epsilon=512, step_size=64, iterations=20, random_start=False, check_every=20)
    plain = attack(victim, clips, lengths, targets, seed=0).adversarial
    aware = DetectorAwareVictim(victim, detector, weight=0.0, check=check, check_weight=10.0)
    steered = attack(aware, clips, lengths, targets, seed=0).adversarial
    # The plain attack runs its 20 steps far past the median; the one that knows the check stays nearer it.
    assert check.excess(steered, classes).detach().mean() < check.excess(plain, classes).detach().mean()
    wave = clips.clone().requires_grad_()
    loss = aware.loss(wave, lengths, aware.encode(targets))
    loss.sum().backward()
    assert torch.isfinite(wave.grad).all() and wave.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="check_weight"):
        DetectorAwareVictim(victim, detector, check_weight=1.0)


@pytest.mark.timeout(240)
def test_run_adaptive_writes_its_table(tiny_keywords, tmp_path):
    data = KWSDataModule(root=str(tiny_keywords), batch_size=16, augment=False)
    victim = KWSModule(padding="valid", dropout=0.0)
    trainer = pl.Trainer(max_steps=2, limit_val_batches=0, **QUIET_TRAINER)
    trainer.fit(victim, data)
    trainer.save_checkpoint(tmp_path / "victim.ckpt")
    detector = DetectorModule(backbone="paper", input_mode="blocks", n_coefficients=20, win_ms=32, hop_ms=16)
    detector_trainer = pl.Trainer(max_steps=1, **QUIET_TRAINER)
    detector_trainer.fit(detector, torch.utils.data.DataLoader([(tones(1, 0)[0], 0), (tones(1, 1)[0], 1)], batch_size=2,
                                                               collate_fn=collate_detection))
    detector_trainer.save_checkpoint(tmp_path / "detector.ckpt")
    rows = run_adaptive(str(tmp_path / "victim.ckpt"), str(tmp_path / "detector.ckpt"), PGD(epsilon=512, step_size=128, iterations=3),
                        KWSDataModule(root=str(tiny_keywords)), targets=["yes", "no"], weights=[0.0, 10.0], max_clips=4,
                        batch_size=4, flooding_snr_db=20.0, flooding_draws=2, over_confidence_quantile=0.5,
                        over_confidence_statistic="flatness", over_confidence_rank_weight=0.2, check_weight=1.0,
                        device="cpu", out_dir=str(tmp_path / "out"))
    assert [r["weight"] for r in rows] == [0.0, 10.0] and all(r["clips"] == 4 for r in rows)
    for row in rows:
        assert 0.0 <= row["victim_success"] <= 1.0 and 0.0 <= row["false_positive_rate"] <= 1.0
        # Fused, a clip is flagged when either the detector or noise flooding flags it.
        assert row["fused_detection_rate"] >= max(row["detection_rate"], row["flooding_detection_rate"])
        assert row["fused_false_positive_rate"] >= row["false_positive_rate"]
        assert 0.0 <= row["calibrated_detection_rate"] <= 1.0
        # The over-confidence check only adds flags to the mean of the detector and noise flooding.
        assert row["mean_over_detection_rate"] >= row["over_confidence_detection_rate"]
        assert 0.0 <= row["mean_over_false_positive_rate"] <= 1.0
    saved = json.loads((tmp_path / "out" / "adaptive.json").read_text())
    assert saved["settings"]["attack"] == "PGD" and len(saved["rows"]) == 2
    assert saved["settings"]["over_confidence_quantile"] == 0.5 and saved["settings"]["over_confidence_statistic"] == "flatness"
    assert saved["settings"]["over_confidence_rank_weight"] == 0.2 and saved["settings"]["check_weight"] == 1.0
    with pytest.raises(ValueError, match="check_weight needs the over-confidence check"):
        run_adaptive(str(tmp_path / "victim.ckpt"), str(tmp_path / "detector.ckpt"), PGD(), KWSDataModule(root=str(tiny_keywords)),
                     targets=["yes"], check_weight=1.0, device="cpu", out_dir=str(tmp_path / "refused"))
    table = (tmp_path / "out" / "adaptive.md").read_text()
    assert "fused with noise flooding | detection rate, calibrated fusion |" in table
    assert "| detection rate, over-confidence alone | detection rate, mean fusion with over-confidence |" in table


@pytest.mark.parametrize("overlay", [None, *sorted(p.name for p in (CONFIGS / "detector" / "adaptive_overlays").glob("*.yaml"))])
def test_adaptive_demo_configs_parse(overlay, monkeypatch):
    from lit_app.experiments.adaptive import main

    monkeypatch.chdir(CONFIGS.parent)
    extra = [] if overlay is None else ["-c", str(CONFIGS / "detector" / "adaptive_overlays" / overlay)]
    with pytest.raises(SystemExit) as stop:
        main(["-c", str(CONFIGS / "detector" / "adaptive_demo.yaml"), *extra, "--print_config"])
    assert stop.value.code == 0


def test_the_calibrated_fusion_flags_what_lies_beyond_the_clean_clips():
    from lit_app.experiments.adaptive import summarise

    clean_cnn, clean_flooding = torch.linspace(0.1, 0.4, 60), torch.zeros(60)
    # Attacked clips: beyond every clean CNN score; flooded where no clean clip is; neither (a clean-looking one).
    scores, flooding = torch.tensor([0.9, 0.2, 0.2]), torch.tensor([0.0, 0.5, 0.0])
    row = summarise(1.0, clean_cnn, scores, torch.tensor([True, True, True]), [20.0] * 3, [-40.0] * 3, 0.5,
                    (clean_flooding, flooding))
    assert row["calibrated_detection_rate"] == pytest.approx(2 / 3)
    assert row["detection_rate"] == pytest.approx(1 / 3) and row["flooding_detection_rate"] == pytest.approx(1 / 3)
