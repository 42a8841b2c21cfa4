"""The perturbation-gain job: perturbations read back from a corpus, scaled, matched by noise, and scored."""

import json

import pytest
import torch

from lit_app.advsets.manifest import write_manifest
from lit_app.audio.io import STRICT, read_audio, write_wav
from lit_app.experiments import perturbation_gain
from lit_app.models.detector import DetectorModule
from tests.conftest import CONFIGS, save_checkpoint

SECOND = 16000


def tiny_corpus(root, sources: int = 3, attacks_per_source: int = 2, with_clean: bool = True):
    """A hand-written adversarial corpus: tones as clean clips, each with high-frequency perturbations."""
    generator = torch.Generator().manual_seed(0)
    time = torch.arange(SECOND) / SECOND
    rows = []
    for s in range(sources):
        clean = 0.3 * torch.sin(2 * torch.pi * (200 + 100 * s) * time)
        if with_clean:
            write_wav(root / f"clean/test/clean-{s}.wav", clean)
            rows.append({"id": f"clean-{s}", "path": f"clean/test/clean-{s}.wav", "kind": "clean", "label": "normal",
                         "split": "test", "source_id": f"src{s}", "num_samples": SECOND})
        for a in range(attacks_per_source):
            delta = 0.01 * torch.randn(SECOND, generator=generator)
            name = f"adv-{s}-{a}"
            write_wav(root / f"adversarial/test/{name}.wav", clean + delta)
            rows.append({"id": name, "path": f"adversarial/test/{name}.wav", "kind": "adversarial",
                         "label": "adversarial", "split": "test", "source_id": f"src{s}", "success": a == 0 or s != 1,
                         "num_samples": SECOND})
    write_manifest(root, rows)
    return root


def test_pairs_hold_successful_attacks_with_their_clean_clip(tmp_path):
    corpus = tiny_corpus(tmp_path / "set")
    pairs = perturbation_gain.perturbation_pairs(corpus, "test")
    assert len(pairs) == 5  # one attack on src1 failed
    assert {pair.source_id for pair in pairs} == {"src0", "src1", "src2"}
    # At 0 dB the scaled clip is the adversarial clip as written, sample for sample.
    written = read_audio(corpus / "adversarial/test/adv-2-1.wav", STRICT)
    assert torch.equal(perturbation_gain.amplified(pairs, 0.0)[-1], written)
    # The SNR moves by the gain, and same-energy noise has the scaled perturbation's energy (to int16 rounding).
    assert perturbation_gain.median_snr_db(pairs, 10.0) == pytest.approx(perturbation_gain.median_snr_db(pairs, 0.0) - 10)
    noisy = perturbation_gain.same_energy_noise(pairs, 10.0, seed=3)
    for (_, clean, delta), clip in zip(pairs, noisy):
        assert float((clip - clean).norm()) == pytest.approx(10 ** 0.5 * float(delta.norm()), rel=1e-3)
        assert not torch.allclose(clip - clean, 10 ** 0.5 * delta, atol=1e-3)  # noise, not the perturbation
    assert all(torch.equal(a, b) for a, b in zip(noisy, perturbation_gain.same_energy_noise(pairs, 10.0, seed=3)))


def test_a_corpus_without_clean_clips_or_attacks_is_refused_by_name(tmp_path):
    corpus = tiny_corpus(tmp_path / "no-clean", with_clean=False)
    with pytest.raises(ValueError, match="no-clean.*clean clip"):
        perturbation_gain.perturbation_pairs(corpus, "test")
    with pytest.raises(ValueError, match="val split"):
        perturbation_gain.perturbation_pairs(tiny_corpus(tmp_path / "set"), "val")


def test_band_shares_split_a_clip_energy_by_frequency():
    time = torch.arange(SECOND) / SECOND
    assert perturbation_gain.band_shares([torch.sin(2 * torch.pi * 300 * time)])[0] > 0.99
    white = perturbation_gain.band_shares([torch.randn(4 * SECOND, generator=torch.Generator().manual_seed(0))])
    assert white == pytest.approx([1 / 8, 1 / 8, 1 / 4, 1 / 2], abs=0.01)  # 0-1, 1-2, 2-4, 4-8 kHz


def test_auroc_ranks_each_detector_separately():
    normal = torch.tensor([[0.1, 0.2], [0.9, 0.8]])
    flagged = torch.tensor([[0.5, 0.6], [0.1, 0.2]])
    assert perturbation_gain.auroc_per_detector(normal, flagged) == [1.0, 0.0]


@pytest.mark.timeout(120)
def test_the_job_scores_every_gain_and_writes_its_tables(tmp_path):
    corpus = tiny_corpus(tmp_path / "set")
    detector = DetectorModule(backbone="paper", input_mode="blocks", n_coefficients=20, win_ms=32, hop_ms=16)
    for seed in (0, 1):
        save_checkpoint(detector, tmp_path / f"detector{seed}.ckpt")
    out = tmp_path / "out"
    rows = perturbation_gain.run_perturbation_gain(
        corpora={"tones": str(corpus)}, detectors={"untrained": str(tmp_path / "detector{seed}.ckpt")}, seeds=[0, 1],
        gains_db=[-200.0, 0.0, 40.0], device="cpu", out_dir=str(out))
    assert [row["gain_db"] for row in rows] == [-200.0, 0.0, 40.0]
    assert all(len(row["attack_auroc"]) == 2 and len(row["noise_auroc"]) == 2 for row in rows)
    # A perturbation scaled below one int16 step leaves every clip as it was: nothing to rank.
    assert rows[0]["attack_auroc"] == pytest.approx([0.5, 0.5]) and rows[0]["noise_auroc"] == pytest.approx([0.5, 0.5])
    assert rows[0]["adversarial_clips"] == 5 and rows[0]["sources"] == 3
    saved = json.loads((out / "perturbation_gain.json").read_text())
    assert saved["rows"] == rows
    table = (out / "perturbation_gain.md").read_text()
    assert "## untrained detector on tones (5 attacks, 3 clean sources)" in table and "| +40 |" in table
    assert rows[0]["band_shares"]["perturbation"] == pytest.approx([1 / 8, 1 / 8, 1 / 4, 1 / 2], abs=0.02)
    assert rows[0]["band_shares"]["clean"][0] > 0.99  # tones of 200-400 Hz
    assert "Energy by band, perturbations: 0-1 kHz 1" in table and "; clean clips: 0-1 kHz 100%" in table
    assert (out / "perturbation_gain.png").stat().st_size > 0
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        perturbation_gain.run_perturbation_gain(corpora={"tones": str(corpus)},
                                                detectors={"x": str(tmp_path / "missing.ckpt")}, device="cpu")


def test_demo_config_parses(monkeypatch):
    monkeypatch.chdir(CONFIGS.parent)
    with pytest.raises(SystemExit) as stop:
        perturbation_gain.main(["-c", str(CONFIGS / "detector" / "perturbation_gain_demo.yaml"), "--print_config"])
    assert stop.value.code == 0
