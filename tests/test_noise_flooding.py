"""Noise flooding: fragile clips score high, robust ones zero; the experiment scores a grid's sets and resumes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from torchmetrics.functional.classification import binary_auroc

from lit_app.attacks import ClassifierVictim, CTCVictim
from lit_app.defences import NoiseFlooding, OverConfidence
from lit_app.defences.noise_flooding import disagreement
from lit_app.experiments import noise_flooding
from lit_app.experiments.noise_flooding import run_noise_flooding
from lit_app.models.detector import DetectorModule
from tests.conftest import CONFIGS, save_checkpoint
from tests.detector_helpers import detection_sets  # noqa: F401  (fixture)
from tests.test_adversarial_corpus import kws_victim, write_config  # noqa: F401  (kws_victim is a fixture)
from tests.test_attacks import TinyCTC

SAMPLES = 4000


class SignOfMean(nn.Module):
    """A two-class victim that answers by the sign of a clip's mean: an offset near 0 sits on its boundary."""

    labels = ["up", "down"]
    hparams = {"clip_samples": SAMPLES}

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        mean = waveforms.mean(1, keepdim=True) * 1000
        return torch.cat([mean, -mean], 1)


class SaturatedMean(SignOfMean):
    """Logits +-1024 x a clip's mean, held within +-8: beyond a mean of 2^-7 the margin stays 16 and the loss is flat."""

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        mean = (waveforms.mean(1, keepdim=True) * 1024).clamp(-8.0, 8.0)
        return torch.cat([mean, -mean], 1)


def tone_with_offsets(offsets: list[float]) -> torch.Tensor:
    t = torch.arange(SAMPLES) / 16000
    tone = 0.3 * torch.sin(2 * math.pi * 400 * t)  # 100 whole periods: mean 0
    return torch.stack([tone + offset for offset in offsets])


def test_disagreement_is_a_class_change_or_a_capped_character_error_rate():
    assert disagreement("yes", "yes", transcripts=False) == 0.0 and disagreement("yes", "no", transcripts=False) == 1.0
    assert disagreement("open", "opan", transcripts=True) == pytest.approx(0.25)
    assert disagreement("go", "go home now please", transcripts=True) == 1.0  # CER 8, capped
    assert disagreement("", "", transcripts=True) == 0.0 and disagreement("", "a", transcripts=True) == 1.0


def test_clips_on_the_boundary_score_high_and_clips_far_from_it_zero():
    victim = ClassifierVictim(SignOfMean())
    audio = tone_with_offsets([2e-5, -2e-5, 0.05, -0.05])
    lengths = torch.full((4,), SAMPLES)
    scores = NoiseFlooding(victim, snr_db=15.0, draws=16, seed=0).score(audio, lengths)
    assert scores.shape == (4,) and scores.dtype == torch.float32
    assert (scores[:2] >= 0.25).all() and (scores[2:] == 0).all()
    assert torch.equal(scores, NoiseFlooding(victim, snr_db=15.0, draws=16, seed=0).score(audio, lengths))
    # Quieter noise moves fewer clips across the boundary.
    assert NoiseFlooding(victim, snr_db=60.0, draws=16, seed=0).score(audio, lengths)[:2].sum() < scores[:2].sum()
    with pytest.raises(ValueError, match="draws"):
        NoiseFlooding(victim, draws=0)


def test_a_recogniser_is_scored_by_the_transcripts_of_noisy_copies():
    victim = CTCVictim(TinyCTC())
    audio = tone_with_offsets([0.0, 0.01]) * torch.tensor([[1.0], [0.2]])
    lengths = torch.tensor([SAMPLES, SAMPLES // 2])
    audio[1, SAMPLES // 2 :] = 0
    scores = NoiseFlooding(victim, snr_db=10.0, draws=3, seed=1).score(audio, lengths)
    assert scores.shape == (2,) and ((scores >= 0) & (scores <= 1)).all()
    assert torch.equal(scores, NoiseFlooding(victim, snr_db=10.0, draws=3, seed=1).score(audio, lengths))


def test_over_confidence_flags_margins_beyond_the_natural_clips_of_the_answered_class():
    victim = ClassifierVictim(SignOfMean())  # margin: 2000 x |mean|, answer: the mean's sign
    # Natural "up" clips have offsets up to 0.01 (margin 20); natural "down" ones are far surer, up to 0.1.
    natural = tone_with_offsets([0.0005 * k for k in range(1, 21)] + [-0.005 * k for k in range(1, 21)])
    check = OverConfidence(victim, natural, quantile=1.0)
    assert torch.allclose(check.limits, torch.tensor([20.0, 200.0]))
    # An "up" clip surer than any natural "up" one is flagged; the same margin answered "down" is natural there.
    clips = tone_with_offsets([0.03, 0.005, -0.03, -0.2])
    assert torch.equal(check.score(clips, torch.full((4,), SAMPLES)), torch.tensor([1.0, 0.0, 0.0, 1.0]))
    # A class the victim answers on too few natural clips takes the quantile of all of them.
    few = OverConfidence(victim, natural[:21], quantile=1.0)
    assert torch.allclose(few.limits, torch.tensor([20.0, 20.0]))
    with pytest.raises(ValueError, match="classifier victim"):
        OverConfidence(CTCVictim(TinyCTC()), natural)
    with pytest.raises(ValueError, match="quantile"):
        OverConfidence(victim, natural, quantile=0.0)
    with pytest.raises(ValueError, match="got none"):
        OverConfidence(victim, natural[:0])
    with pytest.raises(ValueError, match="flatness"):
        OverConfidence(victim, natural, statistic="energy")


def test_the_rank_weight_grades_clips_through_the_upper_half_of_their_class_natural_clips():
    victim = ClassifierVictim(SignOfMean())  # margin: 2000 x |mean|
    natural = tone_with_offsets([0.0005 * k for k in range(1, 21)] + [-0.0005 * k for k in range(1, 21)])
    graded = OverConfidence(victim, natural, quantile=1.0, rank_weight=0.2)
    flags = OverConfidence(victim, natural, quantile=1.0)
    # At or below the natural median: flags only. 15 of 20 natural clips less confident: 2 x 0.75 - 1 = 0.5.
    # Beyond them all: the flag plus the whole weight.
    clips = tone_with_offsets([0.0001, -0.005, 0.00775, -0.00775, 0.03])
    assert torch.allclose(graded.score(clips), torch.tensor([0.0, 0.0, 0.1, 0.1, 1.2]))
    assert torch.equal(flags.score(clips), torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0]))
    assert graded.score(clips[:0]).shape == (0,)
    for weight in (-1.0, 1.0):
        with pytest.raises(ValueError, match="rank_weight"):
            OverConfidence(victim, natural, rank_weight=weight)


def test_flatness_flags_clips_whose_loss_is_flatter_than_any_natural_clip_of_their_class():
    victim = ClassifierVictim(SignOfMean())  # the loss's input gradient shrinks as |mean| grows
    natural = tone_with_offsets([0.0005 * k for k in range(1, 21)] + [-0.0005 * k for k in range(1, 21)])
    check = OverConfidence(victim, natural, quantile=1.0, statistic="flatness")
    margin = OverConfidence(victim, natural, quantile=1.0)
    clips = tone_with_offsets([0.03, 0.005, -0.005, -0.03, 0.0101])
    expected = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0])
    assert torch.equal(check.score(clips), expected) and torch.equal(margin.score(clips), expected)
    # The natural clips' own flatness, per class, is the limit: none of them lies beyond it.
    assert check.score(natural).sum() == 0
    with torch.no_grad():  # a caller that scores without autograd still gets the gradient's flatness
        assert torch.equal(check.score(clips), expected)
    # On a plateau the two part: a clip no surer than the surest natural one, whose loss no longer moves at all.
    plateau = ClassifierVictim(SaturatedMean())
    steps = [k * 2.0**-11 for k in range(1, 17)] + [-k * 2.0**-11 for k in range(1, 17)]  # exact: the surest is 2^-7
    natural = torch.tensor(steps)[:, None].expand(-1, SAMPLES).contiguous()
    on_plateau = torch.tensor([2.0**-5, -(2.0**-5)])[:, None].expand(-1, SAMPLES).contiguous()
    assert OverConfidence(plateau, natural, quantile=1.0).score(on_plateau).sum() == 0  # margin 16, as the surest
    assert torch.equal(OverConfidence(plateau, natural, quantile=1.0, statistic="flatness").score(on_plateau),
                       torch.ones(2))


@pytest.fixture
def pgd_grid(tmp_path, tiny_keywords, kws_victim):  # noqa: F811
    """A grid YAML over one small PGD corpus (against an untrained keyword spotter) and an untrained detector."""
    data_config = write_config(tmp_path / "configs", tmp_path / "pgd", tiny_keywords, kws_victim)
    detector = DetectorModule(backbone="paper", input_mode="blocks", n_coefficients=20, win_ms=32, hop_ms=16)
    for seed in (0, 1):
        save_checkpoint(detector, tmp_path / f"detector{seed}.ckpt")
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"sources": {"pgd": str(data_config)}, "train": {"other": ["pgd"]},
                                    "test": {"pgd": ["pgd"]}, "features": {"MFCC": {}}}))
    overlay = tmp_path / "overlay.yaml"  # replaces the train conditions, as grid overlays do
    overlay.write_text(yaml.safe_dump({"train": {"pgd": ["pgd"]}}))
    return [str(grid), str(overlay)]


def test_fusion_rules():
    cnn, flooding = torch.tensor([0.9, 0.6, 0.1]), torch.tensor([0.0, 0.5, 0.75])  # a clean clip the CNN scores high
    assert torch.equal(noise_flooding.FUSION_RULES["max"](cnn, flooding), torch.tensor([0.9, 0.6, 0.75]))
    assert torch.allclose(noise_flooding.FUSION_RULES["mean"](cnn, flooding), torch.tensor([0.45, 0.55, 0.425]))


def test_the_calibrated_rule_ranks_each_score_among_clean_validation_clips():
    clean = noise_flooding.NormalScores(cnn=torch.tensor([0.50, 0.52, 0.54, 0.56]), flooding=torch.tensor([0.0, 0.0, 0.0, 0.625]))
    # A confident attack only the CNN sees (just above every clean CNN score), one only noise flooding sees, and a
    # clean clip that noise flooding half-suspects, as one clean validation clip was.
    cnn, flooding = torch.tensor([0.58, 0.51, 0.53]), torch.tensor([0.0, 0.75, 0.625])
    labels = torch.tensor([1, 1, 0])
    fused = noise_flooding.FUSION_RULES["calibrated"](cnn, flooding, clean)
    # Tail probabilities: the share of clean clips at or above, itself counted: 1/5, 1/5, 2/5.
    tails = torch.tensor([0.2, 0.2, 0.4])
    alpha = noise_flooding.CALIBRATED_FALSE_ALARMS / 2
    assert torch.allclose(fused, tails.log() / (tails.log() + math.log(alpha)))
    at_alpha = noise_flooding.FUSION_RULES["calibrated"](torch.tensor([0.0]), torch.tensor([1.0]),
                                                         noise_flooding.NormalScores(torch.zeros(39), torch.zeros(39)))
    assert at_alpha.item() == noise_flooding.CALIBRATED_THRESHOLD  # beyond all 39 clean clips: p = 1/40 = alpha
    assert binary_auroc(fused, labels) == 1.0
    # The raw larger score ranks the clean clip above the CNN-only attack: the CNN's scores live near 0.5.
    assert binary_auroc(noise_flooding.FUSION_RULES["max"](cnn, flooding), labels) == 0.5
    rescaled = noise_flooding.NormalScores(cnn=clean.cnn * 10, flooding=clean.flooding)  # no raw scale matters
    assert torch.equal(noise_flooding.FUSION_RULES["calibrated"](cnn * 10, flooding, rescaled), fused)
    with pytest.raises(ValueError, match="normal validation"):
        noise_flooding.FUSION_RULES["calibrated"](cnn, flooding)


def test_the_fusion_rule_is_chosen_by_validation_auroc():
    labels = torch.tensor([0, 1])
    # A clean clip the CNN scores high: only the mean ranks it below the adversarial one.
    rule, aurocs = noise_flooding.choose_fusion(["max", "mean"], torch.tensor([0.9, 0.5]), torch.tensor([0.0, 0.6]), labels)
    assert rule == "mean" and aurocs == {"max": 0.0, "mean": 1.0}
    # An adversarial clip only noise flooding sees: the mean halves it below a clean clip both half-suspect.
    rule, _ = noise_flooding.choose_fusion(["max", "mean"], torch.tensor([0.5, 0.0]), torch.tensor([0.5, 0.9]), labels)
    assert rule == "max"
    assert noise_flooding.choose_fusion(["mean", "max"], torch.tensor([0.1, 0.9]), torch.tensor([0.1, 0.9]), labels)[0] == "mean"


@pytest.mark.timeout(240)
def test_the_experiment_scores_fuses_writes_and_resumes(pgd_grid, tmp_path, monkeypatch):
    out = tmp_path / "out"
    settings = dict(grid=pgd_grid, snr_db=[20.0, 60.0], draws=2, seeds=[0, 1], batch_size=8, device="cpu",
                    fuse_with={"pgd": str(tmp_path / "detector{seed}.ckpt")}, fuse_snr_db=20.0, fusion=["max", "mean", "calibrated"],
                    choose_fusion_on_val=True, out_dir=str(out))
    table = run_noise_flooding(**settings)
    assert table.kinds == {("nothing", "pgd"): "unknown", ("pgd", "pgd"): "known"}
    assert table.features == ["noise flooding 20 dB", "noise flooding 60 dB", "trained CNN", "CNN + noise flooding 20 dB",
                              "mean of CNN and noise flooding 20 dB", "CNN or noise flooding 20 dB, calibrated on normal val clips",
                              "CNN + noise flooding 20 dB, rule chosen on val"]
    auroc = table.values("test/auroc")
    choices = json.loads((out / "fusion_choices.json").read_text())
    assert set(choices) == {"pgd seed0", "pgd seed1"}
    for seed in (0, 1):  # the chosen column repeats the column of the rule chosen for that detector
        rule = choices[f"pgd seed{seed}"]["rule"]
        assert set(choices[f"pgd seed{seed}"]["val/auroc"]) == {"max", "mean", "calibrated"}
        column = noise_flooding.FUSED_COLUMNS[rule].format("noise flooding 20 dB")
        assert auroc[("pgd", "pgd", "CNN + noise flooding 20 dB, rule chosen on val")][seed] == auroc[("pgd", "pgd", column)][seed]
    val_clips = torch.load(out / "runs" / "noise flooding 20 dB" / "seed0-val" / "scores.pt", weights_only=True)["pgd"]
    assert len(auroc[("nothing", "pgd", "noise flooding 20 dB")]) == 2
    assert len(auroc[("pgd", "pgd", "CNN + noise flooding 20 dB")]) == 2
    assert len(auroc[("pgd", "pgd", "mean of CNN and noise flooding 20 dB")]) == 2
    run = out / "runs" / "noise flooding 20 dB" / "seed0"
    record = json.loads((run / "results.json").read_text())
    assert record["settings"]["draws"] == 2 and 0.0 <= record["tests"]["pgd"]["test/auroc"] <= 1.0
    scores = torch.load(run / "scores.pt", weights_only=True)["pgd"]
    assert len(scores["paths"]) == scores["scores"].numel() == scores["labels"].numel() > 0
    assert set(scores["labels"].tolist()) == {0, 1}  # balanced normal and adversarial clips of the test split
    assert not set(val_clips["paths"]) & set(scores["paths"])  # the rule is chosen on clips the test never scores
    assert (out / "results.md").is_file() and (out / "roc_20dB.png").is_file() and (out / "roc_60dB.png").is_file()
    # Fused means the larger score: never below the trained detector's detection rate.
    recall = table.values("test/recall")
    fused, alone = recall[("pgd", "pgd", "CNN + noise flooding 20 dB")], recall[("pgd", "pgd", "trained CNN")]
    assert len(fused) == len(alone) == 2 and all(f >= a for f, a in zip(fused, alone))
    # The CNN alone and the fused detector of record have bootstrap intervals around the seeds' mean, in the table
    # and its CSV.
    assert set(table.intervals) == {("pgd", "pgd", "trained CNN"), ("pgd", "pgd", table.features[-1])}
    for cell, (low, high) in table.intervals.items():
        assert 0.0 <= low <= sum(auroc[cell]) / 2 <= high <= 1.0
    assert "bootstrap interval" in (out / "results.md").read_text()
    assert len((out / "intervals.csv").read_text().splitlines()) == 1 + len(table.intervals)

    # Noise flooding alone may score every split: it trained on none; a fused detector only the test split.
    with pytest.raises(ValueError, match="splits"):
        run_noise_flooding(**{**settings, "splits": ["train", "val", "test"]})
    every = run_noise_flooding(**{**settings, "splits": ["train", "val", "test"], "fuse_with": {}, "seeds": [0],
                                  "snr_db": [20.0], "out_dir": str(tmp_path / "every")})
    clips = torch.load(tmp_path / "every" / "runs" / "noise flooding 20 dB" / "seed0" / "scores.pt", weights_only=True)
    assert len(clips["pgd"]["paths"]) > len(scores["paths"]) and every.rows == [("nothing", "pgd")]

    def refuse(*args, **kwargs):
        raise AssertionError("a finished run was scored again")

    monkeypatch.setattr(noise_flooding.NoiseFlooding, "score", refuse)
    again = run_noise_flooding(**settings)
    assert again.values("test/auroc") == auroc
    with pytest.raises(ValueError, match="not one of snr_db"):
        run_noise_flooding(**{**settings, "fuse_snr_db": 25.0})
    with pytest.raises(ValueError, match="lacks"):
        run_noise_flooding(**{**settings, "fuse_with": {"black": "x{seed}.ckpt"}})
    with pytest.raises(FileNotFoundError, match="detector checkpoint"):
        run_noise_flooding(**{**settings, "fuse_with": {"pgd": str(tmp_path / "missing{seed}.ckpt")}})


@pytest.mark.timeout(240)
def test_over_confidence_flags_join_every_fused_column(pgd_grid, tmp_path):
    settings = dict(grid=pgd_grid, snr_db=[20.0], draws=1, seeds=[0], batch_size=8, device="cpu", bootstrap=0,
                    wandb=False, fuse_with={"pgd": str(tmp_path / "detector{seed}.ckpt")}, fusion=["max", "mean"])
    plain = run_noise_flooding(**settings, out_dir=str(tmp_path / "plain"))
    flagged = run_noise_flooding(**settings, over_confidence_quantile=0.5, over_confidence_statistic="flatness",
                                 out_dir=str(tmp_path / "flagged"))
    suffix = noise_flooding.OVER_CONFIDENCE_SUFFIX
    assert flagged.features == plain.features[:2] + [column + suffix for column in plain.features[2:]]
    assert flagged.values("test/auroc")[("pgd", "pgd", "trained CNN")] == plain.values("test/auroc")[("pgd", "pgd", "trained CNN")]
    # Half the natural clips of each class lie beyond the median: the fused detectors flag more clips, never fewer.
    def flagged_clips(table, column):  # the share of adversarial clips caught plus that of clean clips flagged
        return sum(table.values(metric)[("pgd", "pgd", column)][0] for metric in ("test/recall", "test/fpr"))

    for column in plain.features[2:]:
        assert flagged.values("test/recall")[("pgd", "pgd", column + suffix)][0] >= plain.values("test/recall")[("pgd", "pgd", column)][0]
    mean = "mean of CNN and noise flooding 20 dB"
    assert flagged_clips(flagged, mean + suffix) > flagged_clips(plain, mean)  # clips beyond the median were flagged
    # Ranked through the upper half of the natural clips too: clips above the median score more, by at most the weight.
    spec = noise_flooding.read_grid(pgd_grid)
    sources = {name: noise_flooding.load_source(source)
               for name, source in noise_flooding.grid_sources(spec["sources"], spec["extra_sources"]).items()}
    items = {name: noise_flooding.victim_items(name, source, ["test"]) for name, source in sources.items()}
    flags, ranked = (noise_flooding.over_confidence_scores(items, sources, {}, 1.0, 8, torch.device("cpu"), "flatness", weight)
                     for weight in (0.0, 0.5))
    for name in items:
        assert set(flags[name].tolist()) <= {0.0, 1.0}
        assert (ranked[name] >= flags[name]).all() and (ranked[name] - flags[name] <= 0.5).all()
    assert any((ranked[name] > flags[name]).any() for name in items)


def test_a_source_that_names_no_victim_is_refused_clearly(detection_sets, tmp_path):  # noqa: F811
    grid = tmp_path / "grid.yaml"
    source = {"class_path": "lit_app.advsets.external.ExternalDetectionDataModule",
              "init_args": {"root": str(detection_sets["white"]), "split_fractions": [0.5, 0.25, 0.25]}}
    grid.write_text(yaml.safe_dump({"sources": {"white": source}, "train": {"white": ["white"]}, "test": {"white": ["white"]},
                                    "features": {"MFCC": {}}}))
    with pytest.raises(ValueError, match="needs an adversarial data module"):
        run_noise_flooding(grid=str(grid), out_dir=str(tmp_path / "out"))
    with pytest.raises(ValueError, match="no test conditions"):
        run_noise_flooding(grid=str(grid), tests=["black"], out_dir=str(tmp_path / "out"))
    with pytest.raises(FileNotFoundError, match="no such grid config"):
        run_noise_flooding(grid=[str(grid), str(tmp_path / "missing.yaml")], out_dir=str(tmp_path / "out"))


@pytest.mark.parametrize("overlay", [[], *(["-c", str(path)] for path in sorted(
    (CONFIGS / "detector" / "noise_flooding_overlays").glob("*.yaml")))], ids=lambda args: Path(args[-1]).stem if args else "demo")
def test_demo_configs_parse_and_name_grid_conditions(overlay, monkeypatch, capsys):
    monkeypatch.chdir(CONFIGS.parent)
    with pytest.raises(SystemExit) as stop:
        noise_flooding.main(["-c", str(CONFIGS / "detector" / "noise_flooding_demo.yaml"), *overlay, "--print_config"])
    assert stop.value.code == 0
    settings = yaml.safe_load(capsys.readouterr().out)
    conditions = noise_flooding.read_grid(settings["grid"] if isinstance(settings["grid"], list) else [settings["grid"]])
    assert set(settings["tests"] or []) <= set(conditions["test"])
    sources = {**conditions["sources"], **conditions["extra_sources"]}
    assert {member for members in conditions["train"].values() for member in members} <= set(sources)
    assert set(settings["fuse_with"]) <= set(conditions["train"])


def test_every_train_overlay_is_composed_by_a_noise_flooding_overlay():
    """A train overlay replaces only a grid's train conditions, so it is checked through the stacks that use it."""
    stacked = {Path(path).name for overlay in (CONFIGS / "detector" / "noise_flooding_overlays").glob("*.yaml")
               for path in yaml.safe_load(overlay.read_text())["grid"] if "train_overlays" in path}
    assert stacked == {path.name for path in (CONFIGS / "detector" / "train_overlays").glob("*.yaml")}
