"""CommHookDDPStrategy: PyTorch's stock compression hooks on 2 CPU gloo ranks, the baselines DGC is compared with."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from strategies.dgc import CommHookDDPStrategy
from tests.conftest import QUIET_TRAINER

pytestmark = [pytest.mark.timeout(240), pytest.mark.multiprocess]


class Wide(pl.LightningModule):
    """1.2 MB of weight matrices: after DDP's bucket rebuild they span several buckets, as DeepSpeech's do."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Linear(32, 384), nn.Tanh(), nn.Linear(384, 384), nn.Tanh(), nn.Linear(384, 384), nn.Tanh(), nn.Linear(384, 4)
        )

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)

    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(128, 32, generator=g)
        return DataLoader(TensorDataset(x, x[:, :4].tanh()), batch_size=8)  # learnable, so the loss must fall


class Record(Callback):
    """Saves each rank's hook, bucket count, losses and final weights for the test to compare."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))

    def on_train_end(self, trainer, pl_module):
        logging_data = trainer.strategy.model._get_ddp_logging_data()
        record = {
            "comm_hook": logging_data.get("comm_hook"),
            "buckets": len(str(logging_data.get("rebuilt_bucket_sizes", "")).split(",")),
            "losses": self.losses,
            "params": [p.detach().clone() for p in pl_module.parameters()],
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        torch.save(record, self.folder / f"rank{trainer.global_rank}.pt")


@pytest.mark.parametrize("hook", ["powersgd", "bf16"])
def test_hook_trains_a_multi_bucket_model_on_gloo(hook, tmp_path):
    # PowerSGD chains three all-reduces per bucket; on gloo, buckets used to race and abort the run in its
    # first compressed step ("Received data size doesn't match").
    strategy = CommHookDDPStrategy(
        hook=hook,
        powersgd_rank=2,
        bucket_cap_mb=0.25,
        start_method="spawn",
        process_group_backend="gloo",
        timeout=timedelta(seconds=60),  # a broken collective fails the test instead of hanging it
    )
    trainer = pl.Trainer(
        devices=2, strategy=strategy, max_epochs=2, default_root_dir=tmp_path, callbacks=[Record(tmp_path / "ranks")],
        **QUIET_TRAINER,
    )
    trainer.fit(Wide())
    ranks = [torch.load(tmp_path / "ranks" / f"rank{r}.pt", weights_only=False) for r in range(2)]
    expected_hook = {"powersgd": "powerSGD_hook", "bf16": "bf16_compress_hook"}[hook]
    for rank in ranks:
        assert expected_hook in rank["comm_hook"]
        assert rank["buckets"] >= 3
        assert len(rank["losses"]) == 16
        first_epoch, second_epoch = rank["losses"][:8], rank["losses"][8:]
        assert sum(second_epoch) < sum(first_epoch)
    for a, b in zip(ranks[0]["params"], ranks[1]["params"]):
        torch.testing.assert_close(a, b)  # both ranks applied the same compressed gradient
