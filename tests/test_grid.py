"""The experiment grid end to end on tiny synthesised sets, and the detector configs through ``lit-app``."""

import csv
import json
from pathlib import Path

import pytest
import yaml

from lit_app.cli import main as lit_app_main
from lit_app.experiments.grid import attack_identities, build_parser, grid_sources, load_source, row_kinds
from lit_app.experiments.grid import main as grid_main
from lit_app.experiments.learning_curve import check_curves, curve_markdown
from lit_app.experiments.results_table import ResultsTable, RunResult, format_cell, row_kind
from tests.conftest import CONFIGS
from tests.detector_helpers import detection_sets  # noqa: F401  (fixture)

DETECTOR_CONFIGS = sorted((CONFIGS / "detector").glob("*.yaml"))
# grid_*.yaml drive lit_app.experiments.grid; adaptive_*.yaml, noise_flooding_*.yaml and perturbation_gain_*.yaml the
# experiments of those names (tested there).
LIGHTNING_CONFIGS = [p for p in DETECTOR_CONFIGS
                     if not p.name.startswith(("grid", "adaptive", "noise_flooding", "perturbation_gain"))]
GRID_CONFIGS = [p for p in DETECTOR_CONFIGS if p.name.startswith("grid")]
DATA_CONFIGS = sorted((CONFIGS / "adversarial").glob("*.yaml"))
OVERLAYS = sorted((CONFIGS / "detector" / "grid_overlays").glob("*.yaml"))


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def source(root):
    return {"class_path": "lit_app.advsets.external.ExternalDetectionDataModule",
            "init_args": {"root": str(root), "split_fractions": [0.5, 0.25, 0.25], "batch_size": 8}}


def test_row_kinds_and_cells():
    assert row_kind(["white"], ["white"], False) == "known"
    assert row_kind(["white"], ["black"], False) == "unknown"
    assert row_kind(["white", "black"], ["white", "black"], False) == "multi-condition"
    assert row_kind(["white", "black"], ["white", "pgd"], False) == "partly known"
    assert row_kind(["white"], ["noise"], True) == "control"
    assert format_cell([0.9, 1.0]) == "0.950 ± 0.071" and format_cell([0.5]) == "0.500" and format_cell([]) == "-"
    table = ResultsTable([RunResult("w", "w", f, s, {"test/auroc": v}) for f, s, v in
                          [("A", 0, 0.9), ("A", 1, 1.0), ("B", 0, 0.6), ("B", 1, 0.8)]], {("w", "w"): "known"}, ["A", "B"], [("w", "w")])
    assert table.markdown().splitlines()[-1] == "| w -> w (known) | **0.950 ± 0.071** | 0.700 ± 0.141 |"


@pytest.mark.timeout(240)
def test_tiny_grid_end_to_end_and_resume(detection_sets, tmp_path):  # noqa: F811
    out = tmp_path / "grid"
    config = {
        "sources": {name: source(root) for name, root in detection_sets.items()},
        "train": {"white": ["white"], "black": ["black"]},
        "test": {"white": ["white"], "black": ["black"], "noise": ["noise"]},
        "features": {"MFCC": {"feature": "mfcc"}, "IMFCC": {"feature": "imfcc"}},
        "model": {"backbone": "paper", "input_mode": "blocks", "n_coefficients": 20, "win_ms": 32, "hop_ms": 16, "lr": 0.003},
        "trainer": {"max_epochs": 3, "accelerator": "cpu", "log_every_n_steps": 1},
        "seeds": [0, 1],
        "batch_size": 8,
        "logger": "none",
        "out_dir": str(out),
        "curves": {"white": ["white"]},
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    table = grid_main(["-c", str(path)])

    markdown = (out / "results.md").read_text()
    assert "| train -> test | MFCC | IMFCC |" in markdown
    for row in ("white -> white (known)", "white -> black (unknown)", "black -> white (unknown)", "white -> noise (control)"):
        assert row in markdown
    assert "±" in markdown
    with (out / "runs.csv").open() as handle:
        runs = list(csv.DictReader(handle))
    assert len(runs) == 2 * 3 * 2 * 2  # train x test x features x seeds
    with (out / "results.csv").open() as handle:
        aggregates = [r for r in csv.DictReader(handle) if r["metric"] == "test/auroc"]
    assert len(aggregates) == 2 * 3 * 2 and all(r["n"] == "2" for r in aggregates)
    auc = table.values("test/auroc")
    assert max(sum(auc[("white", "white", f)]) / 2 for f in ("MFCC", "IMFCC")) > 0.8  # it learns the known attack
    assert all((out / f"roc_{t}.png").stat().st_size > 0 for t in ("white", "black"))
    assert not list(out.glob("runs/**/*.png"))  # without W&B, no figure per detector and test condition
    record = json.loads((out / "runs" / "white" / "IMFCC" / "seed1" / "results.json").read_text())
    assert set(record["tests"]) == {"white", "black", "noise"} and record["checkpoint"].endswith("best.ckpt")
    assert record["train_clips"] == {"normal": 12, "adversarial": 12}  # half of each set's 24 + 24 clips trains
    assert "| white | 12 | 12 |" in (out / "learning_curve.md").read_text()
    assert all((out / f"learning_curve_{f}.png").stat().st_size > 0 for f in ("MFCC", "IMFCC"))

    stamp = (out / "runs" / "white" / "IMFCC" / "seed1" / "results.json").stat().st_mtime_ns
    again = grid_main(["-c", str(path)])  # every run is done: nothing retrains
    assert (out / "runs" / "white" / "IMFCC" / "seed1" / "results.json").stat().st_mtime_ns == stamp
    assert again.values("test/auroc") == auc
    with pytest.raises(ValueError, match="other settings"):  # never mixes runs of another set-up into the table
        grid_main(["-c", str(path), "--model", json.dumps({**config["model"], "backbone": "rescnn"})])


def test_learning_curve_table_lists_sizes_in_order_with_their_clip_counts():
    results = [RunResult(train, test, "IMFCC", seed, {"test/auroc": auc}) for train, test, seed, auc in [
        ("w6", "white", 0, 0.6), ("w6", "white", 1, 0.8), ("w6", "noise", 0, 0.5), ("w6", "noise", 1, 0.5),
        ("w60", "white", 0, 0.9), ("w60", "white", 1, 1.0), ("w60", "noise", 0, 0.7), ("w60", "noise", 1, 0.7)]]
    rows = [("w6", "white"), ("w60", "white"), ("w6", "noise"), ("w60", "noise")]
    kinds = {row: "control" if row[1] == "noise" else "known" for row in rows}
    table = ResultsTable(results, kinds, ["IMFCC"], rows)
    text = curve_markdown(table, {"white": ["w6", "w60"]}, {"w6": {"normal": 18, "adversarial": 17},
                                                            "w60": {"normal": 180, "adversarial": 171}})
    lines = text.splitlines()
    assert "| train condition | adversarial clips | normal clips | -> white (known) | -> noise (control) |" in lines
    assert lines.index("| w6 | 17 | 18 | 0.700 ± 0.141 | 0.500 ± 0.000 |") < lines.index(
        "| w60 | 171 | 180 | 0.950 ± 0.071 | 0.700 ± 0.000 |")
    with pytest.raises(ValueError, match="unknown train conditions"):
        check_curves({"white": ["w6", "w600"]}, {"w6": ["a"], "w60": ["b"]})


def test_grid_refuses_unknown_sources(detection_sets, tmp_path):  # noqa: F811
    config = {"sources": {"white": source(detection_sets["white"])}, "train": {"w": ["white"]}, "test": {"b": ["black"]},
              "features": {"MFCC": {}}, "out_dir": str(tmp_path)}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    with pytest.raises(ValueError, match="unknown sources"):
        grid_main(["-c", str(path)])


@pytest.mark.parametrize("config", LIGHTNING_CONFIGS, ids=lambda p: p.name)
def test_detector_configs_fast_dev_run(config, detection_sets, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    lit_app_main(["fit", "-c", str(config), "-c", str(CONFIGS / "trainer" / "cpu.yaml"),
                  f"--data.init_args.root={detection_sets['white']}", "--data.init_args.batch_size=4",
                  "--data.init_args.split_fractions=[0.5, 0.25, 0.25]", "--trainer.fast_dev_run=1"])


@pytest.mark.parametrize("config", GRID_CONFIGS, ids=lambda p: p.name)
def test_grid_configs_parse_and_name_loadable_sources(config, monkeypatch):
    monkeypatch.chdir(CONFIGS.parent)
    settings = build_parser().parse_args(["-c", str(config)]).as_dict()
    assert len(settings["seeds"]) >= 3
    used = {s for condition in ("train", "test") for members in settings[condition].values() for s in members}
    assert used <= set(settings["sources"])
    for spec in settings["sources"].values():
        module = load_source(spec)
        assert module.labels == ["normal", "adversarial"]


def overlaid(overlay: Path) -> dict:
    """An overlay's settings composed onto the grid it is written for (``*_quick.yaml`` onto the quick grid)."""
    base = "grid_quick.yaml" if overlay.stem.endswith("_quick") else "grid_demo.yaml"
    return build_parser().parse_args(["-c", str(CONFIGS / "detector" / base), "-c", str(overlay)]).as_dict()


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_grid_overlays_compose_and_build_detectors(overlay, monkeypatch):
    from lit_app.models.detector import DetectorModule

    monkeypatch.chdir(CONFIGS.parent)
    settings = overlaid(overlay)
    sources = grid_sources(settings["sources"], settings["extra_sources"])
    assert set(settings["sources"]) >= {"white", "black"}  # an overlay adds sources, it does not replace the grid's
    used = {s for condition in ("train", "test") for members in settings[condition].values() for s in members}
    assert used <= set(sources)
    for spec in settings["extra_sources"].values():
        assert load_source(spec).labels == ["normal", "adversarial"]
    for overrides in settings["features"].values():
        DetectorModule(**{**settings["model"], **overrides})


def test_extra_sources_may_not_rename_a_source():
    assert grid_sources({"white": "a.yaml"}, {"more": "b.yaml"}) == {"white": "a.yaml", "more": "b.yaml"}
    with pytest.raises(ValueError, match=r"extra_sources \['white'\] are already sources"):
        grid_sources({"white": "a.yaml"}, {"white": "b.yaml"})


def test_rows_are_known_or_unknown_by_attack_and_victim_not_by_set_name(detection_sets, monkeypatch):  # noqa: F811
    monkeypatch.chdir(CONFIGS.parent)
    settings = overlaid(CONFIGS / "detector" / "grid_overlays" / "more_whitebox.yaml")
    specs = grid_sources(settings["sources"], settings["extra_sources"])
    attacks = {name: attack_identities(name, load_source(specs[name])) for name in ("white", "white_more", "black", "cw_kws")}
    assert attacks["white_more"] == attacks["white"]  # more clips of C&W on the same DeepSpeech: the known attack
    assert row_kind(attacks["white_more"], attacks["white"], False) == "known"
    assert attacks["cw_kws"].isdisjoint(attacks["white"])  # the same attack on another victim is not
    assert attacks["black"].isdisjoint(attacks["white"])
    assert attack_identities("white", load_source(source(detection_sets["white"]))) == {"white"}  # says nothing: its name


def test_matched_noise_as_normal_training_clips_adds_no_attack_to_a_row(monkeypatch):
    monkeypatch.chdir(CONFIGS.parent)
    settings = overlaid(CONFIGS / "detector" / "grid_overlays" / "noise_negatives.yaml")
    sources = {name: load_source(spec) for name, spec in grid_sources(settings["sources"], settings["extra_sources"]).items()}
    assert attack_identities("black_noise_normal", sources["black_noise_normal"]) == set()
    assert attack_identities("black_noise", sources["black_noise"])  # the control, labelled adversarial, is one
    pairs = [("black+noise", "black"), ("both+noise", "white"), ("black+noise", "white"), ("black+noise", "noise")]
    kinds = row_kinds(sources, settings["train"], settings["test"], pairs, settings["controls"])
    assert list(kinds.values()) == ["known", "multi-condition", "unknown", "control"]


@pytest.mark.parametrize("source", DATA_CONFIGS, ids=lambda p: p.name)
def test_detection_data_configs_compose_with_lit_app(source, capsys, monkeypatch):
    monkeypatch.chdir(CONFIGS.parent)
    with pytest.raises(SystemExit) as stop:
        lit_app_main(["fit", "-c", str(CONFIGS / "detector" / "blocks.yaml"), "-c", str(source), "--print_config"])
    assert stop.value.code == 0
    data = yaml.safe_load(capsys.readouterr().out)["data"]
    assert data["class_path"] == "lit_app.advsets.datamodule.AdversarialDataModule"
    assert data["init_args"]["train_sets"][0]["init_args"]["root"].startswith("data/adversarial/")


def test_grid_run_logs_to_wandb(detection_sets, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("WANDB_MODE", "disabled")
    config = {"sources": {"white": source(detection_sets["white"])}, "train": {"white": ["white"]},
              "test": {"white": ["white"]}, "features": {"LFCC": {"feature": "lfcc"}},
              "model": {"input_mode": "blocks", "n_coefficients": 20, "win_ms": 32, "hop_ms": 16},
              "trainer": {"max_epochs": 1, "accelerator": "cpu"}, "seeds": [0], "batch_size": 8, "logger": "wandb",
              "out_dir": str(tmp_path / "grid")}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    table = grid_main(["-c", str(path)])
    assert len(table.results) == 1 and "test/auroc" in table.results[0].metrics
    assert (tmp_path / "grid" / "runs" / "white" / "LFCC" / "seed0" / "test-white" / "test_roc.png").is_file()
