"""Every job through ``lit-app``: a tiny main job (attack set, grid, noise flooding, adaptive attacker, scoring,
report) with ``--print_config`` round trips, offline W&B runs and PNGs; and the CLI's honesty about options."""

from __future__ import annotations

import csv
import json
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch
import yaml

from lit_app import cli
from lit_app.cli import JOBS, main
from lit_app.cli import run as run_lit_app
from tests.conftest import CONFIGS
from tests.detector_helpers import detection_sets  # noqa: F401  (fixture)
from tests.test_adversarial_corpus import kws_victim, write_config  # noqa: F401  (kws_victim is a fixture)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DETECTOR = {"backbone": "paper", "input_mode": "blocks", "n_coefficients": 20, "win_ms": 32, "hop_ms": 16, "lr": 0.003}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def printed_config(capsys, args: list[str], path: Path) -> Path:
    """``lit-app ARGS --print_config`` saved to ``path``: what a user keeps to run the job again with ``-c``."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main([*args, "--print_config"])
    assert stop.value.code == 0
    path.write_text(capsys.readouterr().out)
    return path


def valid_png(path: Path) -> bool:
    from matplotlib.image import imread

    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC and imread(path).shape[0] > 10


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_help_lists_every_job(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    listing = capsys.readouterr().out
    for name in ("fit", "validate", "test", "predict", *JOBS):
        assert f"    {name} " in listing
    for name in JOBS:
        with pytest.raises(SystemExit):
            main([name, "--help"])
        assert f"usage: lit-app {name}" in capsys.readouterr().out


def test_cli_optimizer_options_are_refused_with_the_models_own(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["fit", "-c", str(CONFIGS / "kws" / "demo.yaml"), "--optimizer", "Adam"])
    assert "--optimizer is not available" in str(stop.value.code) and "--model.init_args.lr" in str(stop.value.code)
    with pytest.raises(SystemExit) as stop:
        main(["fit", "-c", str(CONFIGS / "kws" / "demo.yaml"), "--lr_scheduler.class_path=StepLR"])
    assert "--lr_scheduler" in str(stop.value.code)


def test_model_help_shows_a_models_options(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--model.help", "KWSModule"])
    assert "--model.n_mfcc" in capsys.readouterr().out


@pytest.mark.timeout(300)
def test_tiny_main_job_through_lit_app(tmp_path, tiny_keywords, kws_victim, capsys, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    data_config = write_config(tmp_path / "configs", tmp_path / "data" / "pgd", tiny_keywords, kws_victim)

    # 1. The attack set, from the config that --print_config wrote: figures and an offline W&B run with audio.
    generate = printed_config(capsys, ["generate", "-c", str(data_config), "--example_pairs", "1"], tmp_path / "gen.yaml")
    main(["generate", "-c", str(generate)])
    figures = tmp_path / "runs" / "attack-sets" / "pgd"
    assert valid_png(figures / "snr_db_x.png") and valid_png(figures / "pair0_spectrograms.png")
    (attack_run,) = (figures / "wandb").glob("offline-run-*")
    assert list(attack_run.glob("files/media/**/*.wav")) and list(attack_run.glob("files/media/**/*.table.json"))
    main(["generate", "-c", str(generate)])  # a rerun resumes: nothing to build, nothing logged twice
    assert len(list((figures / "wandb").glob("offline-run-*"))) == 1

    # 2. The grid: its progress, PNGs (ROC and DET), a W&B run with figures and the results table.
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({
        "sources": {"pgd": str(data_config)}, "train": {"pgd": ["pgd"]}, "test": {"pgd": ["pgd"]},
        "features": {"MFCC": {}}, "model": DETECTOR, "trainer": {"max_epochs": 2, "accelerator": "cpu"},
        "seeds": [0], "batch_size": 8, "logger": "none", "out_dir": "runs/detector-grid-quick"}))
    capsys.readouterr()
    main(["grid", "-c", str(printed_config(capsys, ["grid", "-c", str(grid)], tmp_path / "grid-printed.yaml"))])
    assert "[grid 1/1] pgd-MFCC-seed0" in capsys.readouterr().out
    out = tmp_path / "runs" / "detector-grid-quick"
    run = out / "runs" / "pgd" / "MFCC" / "seed0"
    assert valid_png(out / "roc_pgd.png") and valid_png(out / "det_pgd.png")
    (grid_run,) = (out / "wandb").glob("offline-run-*")
    assert len(list(grid_run.glob("files/media/**/*.png"))) == 2 and list(grid_run.glob("files/media/**/*.table.json"))
    checkpoint = json.loads((run / "results.json").read_text())["checkpoint"]
    stored = torch.load(checkpoint, weights_only=True)["decision_threshold"]
    grid_scores = torch.load(run / "scores.pt", weights_only=True)["pgd"]

    # 3. Scoring the grid's test clips with its checkpoint gives the grid's scores and the stored threshold.
    clips = tmp_path / "clips.csv"
    clips.write_text("path\n" + "\n".join(grid_scores["paths"]) + "\n")
    scoring = printed_config(capsys, ["score", "--detector", checkpoint, "--inputs", f"[{clips}]", "--batch_size", "8",
                                      "--out", "scores.csv"], tmp_path / "score.yaml")
    main(["score", "-c", str(scoring)])
    rows = read_csv(tmp_path / "scores.csv")
    assert [r["path"] for r in rows] == grid_scores["paths"]
    assert torch.allclose(torch.tensor([float(r["score"]) for r in rows]), grid_scores["scores"], atol=1e-6)
    assert {float(r["threshold"]) for r in rows} == {stored}
    assert all(r["decision"] == ("adversarial" if float(r["score"]) >= stored else "normal") for r in rows)

    # 4. lit-app test and predict take the grid's checkpoint; predictions go to the run's own folder.
    main(["test", "-c", str(data_config), "--ckpt_path", checkpoint, "--trainer.accelerator=cpu", "--trainer.logger=false",
          "--trainer.default_root_dir=runs/detector-test"])
    assert (tmp_path / "runs" / "detector-test" / "lit_app_config-test.yaml").is_file()
    assert not (tmp_path / "runs" / "lit_app_config-test.yaml").exists()
    main(["predict", "-c", str(data_config), "--ckpt_path", checkpoint, "--trainer.accelerator=cpu",
          "--trainer.logger=false", "--trainer.default_root_dir=runs/detector-predict"])
    predicted = read_csv(tmp_path / "runs" / "detector-predict" / "predictions.csv")
    assert len(predicted) == len(rows) and {r["prediction"] for r in predicted} <= {"normal", "adversarial"}
    assert sorted(r["path"] for r in predicted) == sorted(grid_scores["paths"])

    # 5. A new test condition: the grid's detector is tested on it, not trained again.
    from lit_app.experiments import grid as grid_module

    def refuse(*args, **kwargs):
        raise AssertionError("the grid trained a detector again")

    monkeypatch.setattr(grid_module, "train_detector", refuse)
    settings = yaml.safe_load(grid.read_text())
    settings["test"]["pgd_again"] = ["pgd"]
    grid.write_text(yaml.safe_dump(settings))
    table = run_lit_app(["grid", "-c", str(grid)])
    assert set(json.loads((run / "results.json").read_text())["tests"]) == {"pgd", "pgd_again"}
    assert table.values("test/auroc")[("pgd", "pgd_again", "MFCC")] == table.values("test/auroc")[("pgd", "pgd", "MFCC")]

    # 6. Noise flooding fused with the grid's detector; scoring with the victim gives its scores.
    flooding = printed_config(capsys, ["noise-flooding", "--grid", str(grid), "--tests", "[pgd]", "--snr_db", "[20.0]",
                                       "--draws", "2", "--seeds", "[0]", "--batch_size", "8", "--device", "cpu",
                                       "--fuse_with", json.dumps({"pgd": checkpoint}), "--bootstrap", "0",
                                       "--out_dir", "runs/noise-flooding-quick"], tmp_path / "flooding.yaml")
    main(["noise-flooding", "-c", str(flooding)])
    flooded = tmp_path / "runs" / "noise-flooding-quick"
    assert valid_png(flooded / "roc_20dB.png") and valid_png(flooded / "det_20dB.png")
    assert list((flooded / "wandb").glob("offline-run-*/files/media/**/*.table.json"))
    saved = torch.load(flooded / "runs" / "noise flooding 20 dB" / "seed0" / "scores.pt", weights_only=True)["pgd"]
    clips.write_text("path\n" + "\n".join(saved["paths"]) + "\n")
    victim_args = ["--victim", str(kws_victim), "--flooding_snr_db", "20", "--flooding_draws", "2", "--batch_size", "8"]
    main(["score", *victim_args, "--inputs", f"[{clips}]", "--out", "flooding.csv"])
    alone = torch.tensor([float(r["score"]) for r in read_csv(tmp_path / "flooding.csv")])
    assert torch.equal(alone, saved["scores"])
    main(["score", *victim_args, "--detector", checkpoint, "--fusion", "mean", "--inputs", f"[{clips}]", "--out", "fused.csv"])
    fused = read_csv(tmp_path / "fused.csv")
    assert {float(r["threshold"]) for r in fused} == {0.5}
    assert all(float(r["score"]) >= float(a) / 2 - 1e-6 for r, a in zip(fused, alone))

    # 7. The adaptive attacker: its curve as a PNG and in W&B.
    adaptive = printed_config(capsys, [
        "adaptive", "--victim", str(kws_victim), "--detector", checkpoint,
        "--attack", json.dumps({"class_path": "lit_app.attacks.PGD", "init_args": {"epsilon": 512, "iterations": 2}}),
        "--source", json.dumps({"class_path": "lit_app.data.kws.KWSDataModule", "init_args": {"root": str(tiny_keywords)}}),
        "--targets", '["yes", "no"]', "--weights", "[0.0, 10.0]", "--max_clips", "2", "--batch_size", "2", "--device", "cpu",
        "--out_dir", "runs/detector-adaptive-quick"], tmp_path / "adaptive.yaml")
    main(["adaptive", "-c", str(adaptive)])
    assert valid_png(tmp_path / "runs" / "detector-adaptive-quick" / "adaptive.png")
    assert list((tmp_path / "runs" / "detector-adaptive-quick" / "wandb").glob("offline-run-*/files/media/**/*.png"))

    # 8. The report is one page with every stage's pictures, and every picture it names exists.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes" / "main_job"))
    try:
        import report
    finally:
        sys.path.pop(0)
    monkeypatch.setattr(report, "demo_corpora", lambda scale: [tmp_path / "data" / "pgd"])
    report.summarise("quick")
    text = (tmp_path / "runs" / "demo-summary-quick.md").read_text()
    linked = [line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    assert {Path(p).name for p in linked} >= {"snr_db_x.png", "pair0_spectrograms.png", "roc_pgd.png", "det_pgd.png",
                                               "roc_20dB.png", "det_20dB.png", "adaptive.png"}
    assert all(valid_png(tmp_path / "runs" / p) for p in linked)


@pytest.mark.timeout(120)
def test_noise_flooding_scores_an_external_set_against_the_victim_named(detection_sets, kws_victim, tmp_path):  # noqa: F811
    source = {"class_path": "lit_app.advsets.external.ExternalDetectionDataModule",
              "init_args": {"root": str(detection_sets["white"]), "split_fractions": [0.5, 0.25, 0.25]}}
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"sources": {"white": source}, "train": {"white": ["white"]},
                                    "test": {"white": ["white"]}, "features": {"MFCC": {}}}))
    table = run_lit_app(["noise-flooding", "--grid", str(grid), "--victims", json.dumps({"white": str(kws_victim)}),
                  "--snr_db", "[20.0]", "--draws", "1", "--seeds", "[0]", "--device", "cpu", "--bootstrap", "0",
                  "--out_dir", str(tmp_path / "out")])
    assert len(table.values("test/auroc")[("nothing", "white", "noise flooding 20 dB")]) == 1
    saved = torch.load(tmp_path / "out" / "runs" / "noise flooding 20 dB" / "seed0" / "scores.pt", weights_only=True)
    assert set(saved["white"]["labels"].tolist()) == {0, 1} and all(Path(p).is_file() for p in saved["white"]["paths"])


def test_score_lists_or_refuses_bad_files(tmp_path, detection_sets, capsys):  # noqa: F811
    from lit_app.models.detector import DetectorModule
    from tests.conftest import save_checkpoint

    checkpoint = save_checkpoint(DetectorModule(**DETECTOR), tmp_path / "detector.ckpt")
    folder = tmp_path / "clips"
    folder.mkdir()
    for name in ("a.wav", "b.wav"):
        (folder / name).write_bytes((detection_sets["white"] / "normal" / "clip000.wav").read_bytes())
    (folder / "broken.wav").write_bytes(b"not audio")
    with pytest.raises(SystemExit) as refused:
        main(["score", "--detector", str(checkpoint), "--inputs", f"[{folder}]", "--out", str(tmp_path / "s.csv")])
    error = capsys.readouterr().err.strip()
    assert refused.value.code == 1 and error.count("\n") == 0  # one line, no traceback
    assert error.startswith("lit-app: error: ") and "broken.wav: unreadable audio" in error
    main(["score", "--detector", str(checkpoint), "--inputs", str(folder), "--skip_bad_files", "true",
          "--out", str(tmp_path / "s.csv")])
    assert [Path(r["path"]).name for r in read_csv(tmp_path / "s.csv")] == ["a.wav", "b.wav"]
    assert "broken.wav" in (tmp_path / "s.csv.skipped.txt").read_text()
    assert {r["threshold"] for r in read_csv(tmp_path / "s.csv")} == {"0.5"}  # never validated: the default


def test_the_installed_command_exits_0_after_a_job_that_returns_results(monkeypatch):
    """The console script calls ``sys.exit(main())``: a results table returned there printed itself and exited 1,
    which stopped the main job after its grid."""
    (entry,) = entry_points(group="console_scripts", name="lit-app")
    monkeypatch.setattr(cli, "run_job", lambda name, args: {"a results": "table"})
    with pytest.raises(SystemExit) as stopped:
        sys.exit(entry.load()(["grid", "-c", "grid.yaml"]))
    assert stopped.value.code is None
    assert run_lit_app(["grid", "-c", "grid.yaml"]) == {"a results": "table"}  # what tests and scripts call instead
