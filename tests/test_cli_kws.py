"""The lit-app command on the KWS configs: --print_config round trips, fast_dev_run, fit then test, W&B."""

import json
import time

import pytest
import yaml

from lit_app.cli import LitAppCLI, main
from tests.conftest import CONFIGS

KWS_CONFIGS = sorted((CONFIGS / "kws").glob("*.yaml"))
PRESETS = sorted((CONFIGS / "trainer").glob("cpu*.yaml")) + sorted((CONFIGS / "logger").glob("*.yaml"))


def tiny_data(root):
    return [f"--data.init_args.root={root}", "--data.init_args.synthesize=null", "--data.init_args.batch_size=8"]


def print_config(capsys, args):
    with pytest.raises(SystemExit) as stop:
        main(["fit", *args, "--print_config"])
    assert stop.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("config", KWS_CONFIGS, ids=lambda p: p.name)
def test_print_config_round_trips(config, capsys, tmp_path):
    printed = print_config(capsys, ["-c", str(config)])
    saved = tmp_path / "printed.yaml"
    saved.write_text(printed)
    assert print_config(capsys, ["-c", str(saved)]) == printed
    assert yaml.safe_load(printed)["model"]["class_path"].startswith("lit_app.")


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_presets_compose_with_a_model_config(preset, capsys):
    printed = yaml.safe_load(print_config(capsys, ["-c", str(CONFIGS / "kws" / "demo.yaml"), "-c", str(preset)]))
    for key, value in yaml.safe_load(preset.read_text())["trainer"].items():
        got = printed["trainer"][key]
        assert got == value or (isinstance(value, dict) and got["class_path"] == value["class_path"])


@pytest.mark.parametrize("config", KWS_CONFIGS, ids=lambda p: p.name)
def test_fast_dev_run(config, tiny_keywords, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["fit", "-c", str(config), "-c", str(CONFIGS / "trainer" / "cpu.yaml"), *tiny_data(tiny_keywords),
          "--trainer.fast_dev_run=2"])


def test_fit_then_test_from_checkpoint(tiny_keywords, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["-c", str(CONFIGS / "kws" / "demo.yaml"), "-c", str(CONFIGS / "trainer" / "cpu.yaml"),
            "-c", str(CONFIGS / "logger" / "csv.yaml"), *tiny_data(tiny_keywords)]
    main(["fit", *args, "--trainer.max_epochs=1"])
    best = tmp_path / "runs" / "kws-demo" / "checkpoints" / "best.ckpt"
    assert best.exists() and (tmp_path / "runs" / "kws-demo" / "checkpoints" / "last.ckpt").exists()
    main(["test", *args, f"--ckpt_path={best}"])
    results = json.loads((tmp_path / "runs" / "kws-demo" / "results.json").read_text())
    assert results["stage"] == "test" and results["ckpt_path"] == str(best)
    assert 0.0 <= results["metrics"]["test/acc"] <= 1.0
    assert (tmp_path / "runs" / "csv" / "lit-app").is_dir()


def test_a_run_moved_with_default_root_dir_keeps_its_checkpoints_and_results(tiny_keywords, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["-c", str(CONFIGS / "kws" / "demo.yaml"), "-c", str(CONFIGS / "trainer" / "cpu.yaml"),
            "-c", str(CONFIGS / "logger" / "csv.yaml"), *tiny_data(tiny_keywords), "--trainer.default_root_dir=runs/mine"]
    main(["fit", *args, "--trainer.max_epochs=1"])
    best = tmp_path / "runs" / "mine" / "checkpoints" / "best.ckpt"
    assert best.is_file() and best.with_name("last.ckpt").is_file()
    assert not (tmp_path / "runs" / "kws-demo").exists()  # the config's own run, which a user may already have
    main(["test", *args, f"--ckpt_path={best}"])
    assert json.loads((tmp_path / "runs" / "mine" / "results.json").read_text())["ckpt_path"] == str(best)


def test_wandb_logger_experiment_in_disabled_mode(tiny_keywords, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    cli = LitAppCLI(args=["-c", str(CONFIGS / "kws" / "demo.yaml"), "-c", str(CONFIGS / "logger" / "wandb.yaml"),
                          *tiny_data(tiny_keywords)], run=False)
    experiment = cli.trainer.logger.experiment
    experiment.log({"probe": 1.0})
    assert cli.trainer.logger.name == "lit-app"
    assert not (tmp_path / "runs" / "wandb").exists() or not list((tmp_path / "runs" / "wandb").glob("*run-*"))


@pytest.mark.timeout(180)
def test_wandb_offline_run_folder_holds_metrics(tiny_keywords, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    main(["fit", "-c", str(CONFIGS / "kws" / "demo.yaml"), "-c", str(CONFIGS / "trainer" / "cpu.yaml"),
          "-c", str(CONFIGS / "logger" / "wandb.yaml"), *tiny_data(tiny_keywords),
          # absolute: the W&B service process outlives a test and keeps the first test's working folder
          f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}",
          "--trainer.max_steps=2", "--trainer.limit_val_batches=1", "--trainer.log_every_n_steps=1"])
    import wandb

    wandb.finish()  # flushes the run file
    runs = list((tmp_path / "runs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    (history,) = runs[0].glob("*.wandb")
    # The W&B service process writes the run file on its own schedule; on a loaded machine it can lag the run.
    deadline = time.monotonic() + 60
    while b"train/loss" not in history.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert b"train/loss" in history.read_bytes()
