"""Shared fixtures. W&B is disabled and kept out of the home folder; Lightning runs without progress bars."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("CI", "true")
os.environ["WANDB_MODE"] = "disabled"
os.environ["WANDB_SILENT"] = "true"

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
# A Trainer that writes and prints nothing of its own: tests pass what they check explicitly.
QUIET_TRAINER = dict(
    accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
)


def save_checkpoint(model, path: Path) -> Path:
    """Write ``model`` (a LightningModule, trained or not) as ``lit-app fit`` would, without training it."""
    import pytorch_lightning as pl

    trainer = pl.Trainer(max_steps=0, **QUIET_TRAINER)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture
def one_thread():
    """Torch on one thread for the test: two threads on a shared 2-core machine run small convolutions several
    times slower. A test module opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _wandb_isolation(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    yield
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None:
        if wandb.run is not None:
            wandb.finish()
        wandb.teardown()  # the settings singleton would keep this test's WANDB_MODE


TINY_CORPUS = dict(clips_per_keyword=10, clips_per_other_word=2, engines=["espeak"], noise_seconds=3.0, num_workers=0)


@pytest.fixture(scope="session")
def tiny_keywords(tmp_path_factory) -> Path:
    """A small synthetic Speech Commands corpus (espeak-ng only), built once per test session."""
    from lit_app.data.synth.keywords import SyntheticKeywordCorpus

    root = tmp_path_factory.mktemp("corpora") / "keywords"
    return SyntheticKeywordCorpus(**TINY_CORPUS).build(root, show_progress=False)
