"""DGC tier 4: a real ``torchrun`` launch (how clusters start jobs), in a subprocess with a hard timeout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SCRIPT = r'''
import json, sys
from pathlib import Path
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from pytorch_lightning.callbacks import Callback
from strategies.dgc import DGCStrategy


class Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 4))

    def training_step(self, batch, batch_idx):
        return nn.functional.mse_loss(self.net(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        return DataLoader(TensorDataset(torch.randn(64, 8, generator=g), torch.randn(64, 4, generator=g)), batch_size=8)


class Report(Callback):
    def on_train_end(self, trainer, pl_module):
        stats = trainer.strategy.dgc_state.last_step
        # One file per rank: both ranks printing to the launcher's shared stdout can interleave on one line.
        Path(sys.argv[1], f"result-rank{trainer.global_rank}.json").write_text(json.dumps({
            "rank": trainer.global_rank,
            "world": trainer.world_size,
            "environment": type(trainer.strategy.cluster_environment).__name__,
            "comm_hook": trainer.strategy.model._get_ddp_logging_data().get("comm_hook"),
            "steps": trainer.global_step,
            "dense_buckets": stats.dense_buckets,
            "checksum": float(sum(p.double().sum() for p in pl_module.parameters())),
        }))


trainer = pl.Trainer(accelerator="cpu", devices=2, strategy=DGCStrategy(density=0.1, warmup_densities=(), min_compress_numel=64,
                     process_group_backend="gloo"), max_epochs=2, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, callbacks=[Report()],
                     default_root_dir=sys.argv[1])
trainer.fit(Tiny())
'''


@pytest.mark.slow
@pytest.mark.multiprocess
@pytest.mark.timeout(240)
def test_torchrun_launch_runs_dgc_on_both_ranks(tmp_path):
    script = tmp_path / "train_dgc.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    for key in ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK"):
        env.pop(key, None)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script), str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = [json.loads(path.read_text()) for path in sorted(tmp_path.glob("result-rank*.json"))]
    assert sorted(r["rank"] for r in results) == [0, 1]
    for r in results:
        assert r["environment"] == "TorchElasticEnvironment"  # the launcher's ranks, not Lightning's own
        assert r["world"] == 2 and r["comm_hook"] == "dgc_hook" and r["steps"] == 8
        assert r["dense_buckets"] == 0  # sparse at the end (after the 2 dense steps)
    assert results[0]["checksum"] == results[1]["checksum"]
