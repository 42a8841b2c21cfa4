"""The lit-app command on the ASR configs: fast_dev_run of each, fit then test, checkpoints for the attacks."""

import json

import pytest
import torch

from lit_app.checkpoints import load_module
from lit_app.cli import LitAppCLI, main
from lit_app.models.asr import DeepSpeechModule
from tests import asr_helpers
from tests.asr_helpers import make_commonvoice, make_librispeech
from tests.conftest import CONFIGS

tiny_sentences = asr_helpers.tiny_sentences  # the shared corpus fixture

ASR_CONFIGS = sorted((CONFIGS / "asr").glob("*.yaml"))
CPU = str(CONFIGS / "trainer" / "cpu.yaml")


def data_root(config, tmp_path, tiny_sentences):
    corpus = config.read_text()
    if "corpus: librispeech" in corpus:
        return [f"--data.init_args.root={make_librispeech(tmp_path)}"]
    if "corpus: commonvoice" in corpus:
        return [f"--data.init_args.root={make_commonvoice(tmp_path)}"]
    return [f"--data.init_args.root={tiny_sentences}", "--data.init_args.synthesize=null"]


def test_every_config_is_covered():
    assert {p.stem for p in ASR_CONFIGS} >= {"demo", "full", "librispeech", "commonvoice"}


@pytest.mark.parametrize("config", ASR_CONFIGS, ids=lambda p: p.stem)
def test_fast_dev_run(config, tmp_path, tiny_sentences, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = LitAppCLI(args=[
        "fit", "-c", str(config), "-c", CPU, *data_root(config, tmp_path, tiny_sentences),
        "--data.init_args.batch_size=2", "--data.init_args.num_workers=0",
        "--trainer.fast_dev_run=1", f"--trainer.default_root_dir={tmp_path}",
    ])
    assert isinstance(cli.model, DeepSpeechModule)
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    metrics = cli.trainer.callback_metrics
    assert {"train/loss_step", "val/loss", "val/cer", "val/wer"} <= set(metrics)
    assert cli.model.alphabet.symbols == cli.datamodule.labels  # the data module's alphabet reached the model
    # The bucketed batch sampler shards by rank itself; Lightning refuses to wrap it on several devices otherwise.
    assert cli.config.fit.trainer.use_distributed_sampler is False


def test_fit_then_test_writes_results_and_a_loadable_victim(tmp_path, tiny_sentences, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the config writes under runs/asr-demo
    run = tmp_path / "runs" / "asr-demo"
    common = [
        "-c", str(CONFIGS / "asr" / "demo.yaml"), "-c", CPU, "-c", str(CONFIGS / "logger" / "wandb.yaml"),
        f"--data.init_args.root={tiny_sentences}", "--data.init_args.synthesize=null", "--data.init_args.batch_size=8",
    ]
    main(["fit", *common, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2"])
    best = run / "checkpoints" / "best.ckpt"
    assert best.is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    main(["test", *common, f"--ckpt_path={best}"])
    results = json.loads((run / "results.json").read_text())
    assert results["stage"] == "test" and 0.0 <= results["metrics"]["test/cer"] <= 1.5
    assert "test/wer" in results["metrics"] and results["metrics"]["test/ctc_infeasible"] == 0
    victim = load_module(best, DeepSpeechModule)
    assert victim.hparams.n_hidden == 256 and victim.hop_length == 320
    assert isinstance(victim.transcribe(torch.zeros(1, 16000))[0], str)
