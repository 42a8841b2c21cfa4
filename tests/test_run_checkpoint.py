"""RunCheckpoint: checkpoints in the run's folder, and resuming checkpoints written by Lightning's ModelCheckpoint."""

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.demos.boring_classes import BoringModel

from callbacks import RunCheckpoint
from tests.conftest import CONFIGS


def test_every_config_keeps_its_checkpoints_in_its_run_folder():
    configs = [p for p in CONFIGS.rglob("*.yaml") if "Checkpoint" in p.read_text()]
    assert len(configs) >= 16
    for config in configs:
        text = config.read_text()
        assert "callbacks.RunCheckpoint" in text and "ModelCheckpoint" not in text and "dirpath" not in text, config


class LoggedLoss(BoringModel):
    def validation_step(self, batch, batch_idx):
        loss = self.step(batch)
        self.log("val_loss", loss)
        return loss


def test_resuming_a_model_checkpoint_run_keeps_its_best_score(tmp_path):
    def trainer(callback, epochs):
        return pl.Trainer(max_epochs=epochs, limit_train_batches=2, limit_val_batches=2, callbacks=[callback],
                          default_root_dir=tmp_path, logger=False, enable_progress_bar=False, enable_model_summary=False)

    earlier = ModelCheckpoint(dirpath=tmp_path / "checkpoints", monitor="val_loss", save_last=True)
    trainer(earlier, 1).fit(LoggedLoss())
    resumed = RunCheckpoint(monitor="val_loss", save_last=True)
    assert resumed.state_key == earlier.state_key
    run = trainer(resumed, 1)
    run.fit(LoggedLoss(), ckpt_path=tmp_path / "checkpoints" / "last.ckpt")  # already at max_epochs: restores only
    assert resumed.dirpath == str((tmp_path / "checkpoints").resolve())
    assert torch.equal(resumed.best_model_score, earlier.best_model_score)
    assert resumed.best_model_path == earlier.best_model_path
