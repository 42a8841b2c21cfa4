"""DGC tier 3: DGCStrategy inside Lightning's Trainer on 2 CPU ranks (spawn), its contract checks and presets."""

from __future__ import annotations

import os
import shutil
import socket
from datetime import timedelta
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.plugins.precision import MixedPrecision
from pytorch_lightning.strategies import StrategyRegistry
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from callbacks import DGCMonitor
from strategies.dgc import DGCStrategy
from tests.conftest import QUIET_TRAINER

REPO = Path(__file__).resolve().parents[1]
EPOCHS = 4  # 4 steps per epoch and rank


class Tiny(pl.LightningModule):
    """A deterministic regression model: no dropout, no shuffling, so runs can be compared exactly."""

    def __init__(self, optimizer: str = "sgd", cycle_momentum: bool | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 4))
        self.optimizer_name = optimizer
        self.cycle_momentum = cycle_momentum  # None: StepLR; otherwise OneCycleLR with this setting

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        if self.optimizer_name == "adam":
            return torch.optim.Adam(self.parameters(), lr=1e-3)
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)
        if self.cycle_momentum is not None:
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=0.1, total_steps=100, cycle_momentum=self.cycle_momentum
            )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        return DataLoader(TensorDataset(torch.randn(64, 8, generator=g), torch.randn(64, 4, generator=g)), batch_size=8)


class Probe(Callback):
    """Records, on every rank, what the strategy did; the test reads the files after the ranks exit."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.steps: list[tuple] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        stats = trainer.strategy.dgc_state.last_step
        self.steps.append((stats.iteration, stats.density, stats.dense_buckets, stats.buckets, trainer.optimizers[0].param_groups[0]["lr"]))

    def on_train_end(self, trainer, pl_module):
        group = trainer.optimizers[0].param_groups[0]
        record = {
            "comm_hook": trainer.strategy.model._get_ddp_logging_data().get("comm_hook"),
            "group": {k: group[k] for k in ("momentum", "nesterov", "weight_decay")},
            "adopted": trainer.strategy.dgc_state.compressor.momentum,
            "steps": self.steps,
            "params": [p.detach().clone() for p in pl_module.parameters()],
        }
        Path(self.folder).mkdir(parents=True, exist_ok=True)
        torch.save(record, Path(self.folder) / f"rank{trainer.global_rank}.pt")


def dgc(**overrides) -> DGCStrategy:
    settings = dict(
        density=0.1,
        warmup_densities=(0.5, 0.25),
        min_compress_numel=64,
        start_method="spawn",
        process_group_backend="gloo",
        timeout=timedelta(seconds=60),  # a broken collective fails the test instead of hanging it
    )
    settings.update(overrides)
    return DGCStrategy(**settings)


def fit(root: Path, name: str, ckpt_path: str | None = None, checkpoints: bool = False, **strategy) -> dict:
    callbacks: list[Callback] = [Probe(str(root / name)), DGCMonitor()]
    if checkpoints:
        callbacks.append(ModelCheckpoint(dirpath=root / "ckpt", filename="{epoch}", save_top_k=-1, every_n_epochs=1))
    trainer = pl.Trainer(
        devices=2, strategy=dgc(**strategy), max_epochs=EPOCHS, default_root_dir=root, callbacks=callbacks,
        **{**QUIET_TRAINER, "enable_checkpointing": checkpoints},
    )
    trainer.fit(Tiny(), ckpt_path=ckpt_path)
    ranks = [torch.load(root / name / f"rank{r}.pt", weights_only=False) for r in range(2)]
    return {"metrics": dict(trainer.callback_metrics), "ranks": ranks}


pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    root = tmp_path_factory.mktemp("dgc_fit")
    return root, fit(root, "straight", checkpoints=True)


COMPACT = dict(aggregation="reduce_scatter", value_dtype="fp8", index_coding="block16")


@pytest.mark.multiprocess
def test_reduce_scatter_resume_matches_the_uninterrupted_run(tmp_path):
    run = fit(tmp_path, "straight", checkpoints=True, **COMPACT)
    assert run["metrics"]["dgc/wire_ratio"].item() > 1
    for a, b in zip(run["ranks"][0]["params"], run["ranks"][1]["params"]):
        assert torch.equal(a, b)
    resumed = fit(tmp_path, "resumed", ckpt_path=str(tmp_path / "ckpt" / "epoch=1.ckpt"), **COMPACT)
    for rank in range(2):  # each rank's residuals differ (entries the global selection dropped stay with their sender)
        for a, b in zip(resumed["ranks"][rank]["params"], run["ranks"][rank]["params"]):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


@pytest.mark.multiprocess
def test_fit_on_two_cpu_ranks_runs_the_hook(straight):
    _, run = straight
    for rank in run["ranks"]:
        assert rank["comm_hook"] == "dgc_hook"  # stock Lightning would leave None on CPU
        assert rank["group"] == {"momentum": 0.0, "nesterov": False, "weight_decay": 0.0}
        assert rank["adopted"] == 0.9
    for a, b in zip(run["ranks"][0]["params"], run["ranks"][1]["params"]):
        assert torch.equal(a, b)


@pytest.mark.multiprocess
def test_warmup_dense_steps_and_fallback_follow_the_schedule(straight):
    _, run = straight
    steps = run["ranks"][0]["steps"]
    assert [s[0] for s in steps] == list(range(4 * EPOCHS))
    densities = [s[1] for s in steps]
    # epoch 0: 2 dense steps, then 50% (as many bytes as dense for 2 ranks: falls back); epoch 1: 25%; then 10%
    assert densities == [1.0, 1.0, 0.5, 0.5] + [0.25] * 4 + [0.1] * 8
    dense = [s[2] == s[3] for s in steps]
    assert dense == [True] * 4 + [False] * 12


@pytest.mark.multiprocess
def test_learning_rate_schedule_is_untouched(straight):
    _, run = straight
    lrs = [s[4] for s in run["ranks"][0]["steps"]]
    assert lrs == pytest.approx([0.1 * 0.5 ** ((i + 1) // 5) for i in range(len(lrs))])


@pytest.mark.multiprocess
def test_monitor_logs_compression(straight):
    _, run = straight
    metrics = run["metrics"]
    for key in ("density", "bytes_sent", "dense_bytes", "compression_ratio", "selection_ms", "dense_buckets",
                "wire_bytes", "wire_ratio"):
        assert f"dgc/{key}" in metrics
    n = 8 * 32 + 32 + 32 * 4 + 4
    sent = (26 + 13) * 8 + (32 + 4) * 4  # ceil(0.1 * 256) + ceil(0.1 * 128) entries, dense biases
    assert metrics["dgc/dense_bytes"].item() == 4 * n
    assert metrics["dgc/bytes_sent"].item() == sent
    assert metrics["dgc/compression_ratio"].item() == pytest.approx(4 * n / sent)


@pytest.mark.multiprocess
def test_resume_matches_the_uninterrupted_run(straight):
    root, run = straight
    checkpoint = root / "ckpt" / "epoch=1.ckpt"
    assert (root / "ckpt" / "epoch=1.ckpt.dgc-rank0.pt").exists() and (root / "ckpt" / "epoch=1.ckpt.dgc-rank1.pt").exists()
    resumed = fit(root, "resumed", ckpt_path=str(checkpoint))
    assert [s[0] for s in resumed["ranks"][0]["steps"]] == list(range(8, 16))  # dense_steps are not repeated
    for rank in range(2):
        for a, b in zip(resumed["ranks"][rank]["params"], run["ranks"][rank]["params"]):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)

    # Without the per-rank files the run restarts from empty residuals and drifts: the check above can fail.
    bare = root / "bare"
    bare.mkdir()
    shutil.copy(checkpoint, bare / checkpoint.name)
    lost = fit(root, "lost", ckpt_path=str(bare / checkpoint.name))
    drift = max((a - b).abs().max().item() for a, b in zip(lost["ranks"][0]["params"], run["ranks"][0]["params"]))
    assert drift > 1e-4


def test_checkpoint_resumed_without_dgc_keeps_sgd_settings_and_warns(straight, tmp_path):
    root, _ = straight
    checkpoint = root / "ckpt" / "epoch=1.ckpt"
    saved = torch.load(checkpoint, weights_only=False)
    # The saved groups hold SGD's own settings (the live ones are zero while DGC trains) ...
    group = saved["optimizer_states"][0]["param_groups"][0]
    assert (group["momentum"], group["nesterov"], group["weight_decay"]) == (0.9, False, 1e-3)
    # ... so a run without DGC resumes as momentum SGD with weight decay, and Lightning warns that DGC is missing.
    seen = {}

    class Groups(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.setdefault("group", dict(trainer.optimizers[0].param_groups[0]))

    trainer = pl.Trainer(devices=1, max_epochs=3, default_root_dir=tmp_path, callbacks=[Groups()],
                         **QUIET_TRAINER)
    with pytest.warns(UserWarning, match="trained with Deep Gradient Compression: resume it with DGCStrategy"):
        trainer.fit(Tiny(), ckpt_path=str(checkpoint))
    assert (seen["group"]["momentum"], seen["group"]["weight_decay"]) == (0.9, 1e-3)

    # DGC's own resume takes the marker out before Lightning compares callback states: no such warning there.
    with pytest.warns(UserWarning, match="cannot be restored"):  # an unlaunched strategy has no ranks
        loaded = dgc().load_checkpoint(checkpoint)
    assert not any("Deep Gradient Compression" in key for key in loaded["callbacks"])


@pytest.fixture
def one_rank_group(monkeypatch):
    """A 1-rank DDP run in this process; restores the environment and process group it leaves behind."""
    saved = dict(os.environ)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    yield
    if dist.is_initialized():
        dist.destroy_process_group()
    os.environ.clear()
    os.environ.update(saved)


def one_rank_trainer(tmp_path, gradient_clip_val: float | None = None, **strategy) -> pl.Trainer:
    return pl.Trainer(
        devices=1, strategy=dgc(start_method="popen", **strategy), max_steps=1, default_root_dir=tmp_path,
        gradient_clip_val=gradient_clip_val, **QUIET_TRAINER,
    )


@pytest.mark.parametrize("exchange", [{}, COMPACT], ids=["paper", "reduce_scatter"])
def test_refuses_adaptive_optimizers(tmp_path, one_rank_group, exchange):
    with pytest.raises(ValueError, match=r"needs torch.optim.SGD, got Adam.*optimizer: sgd"):
        one_rank_trainer(tmp_path, **exchange).fit(Tiny(optimizer="adam"))


@pytest.mark.parametrize("exchange", [{}, COMPACT], ids=["paper", "reduce_scatter"])
def test_refuses_gradient_clip_val(tmp_path, one_rank_group, exchange):
    with pytest.raises(ValueError, match=r"gradient_clip_val=1.0.*DGCStrategy\(clip_norm=...\).*not the global norm"):
        one_rank_trainer(tmp_path, gradient_clip_val=1.0, **exchange).fit(Tiny())


def test_refuses_unknown_exchange_settings():
    with pytest.raises(ValueError, match=r"aggregation must be one of"):
        dgc(aggregation="ring")
    with pytest.raises(ValueError, match=r"index_coding must be one of"):
        dgc(index_coding="varint")
    with pytest.raises(ValueError, match=r"reduce_scatter.*selection='tensor'"):
        dgc(aggregation="reduce_scatter", selection="bucket")


def test_refuses_momentum_cycling_schedulers(tmp_path, one_rank_group):
    with pytest.raises(ValueError, match=r"OneCycleLR\(cycle_momentum=True\).*cycle_momentum=False"):
        one_rank_trainer(tmp_path).fit(Tiny(cycle_momentum=True))


def test_refuses_momentum_written_back_during_training(tmp_path, one_rank_group):
    class WritesMomentum(Callback):  # what a momentum-cycling scheduler unknown to the strategy would do
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            trainer.optimizers[0].param_groups[0]["momentum"] = 0.85

    trainer = pl.Trainer(devices=1, strategy=dgc(start_method="popen"), max_steps=3, default_root_dir=tmp_path,
                         callbacks=[WritesMomentum()], **QUIET_TRAINER)
    with pytest.raises(RuntimeError, match=r"'momentum': 0.85.*a second time"):
        trainer.fit(Tiny())


@pytest.mark.parametrize("exchange", [{}, COMPACT], ids=["paper", "reduce_scatter"])
def test_momentum_cycling_off_is_accepted(tmp_path, one_rank_group, exchange):
    trainer = one_rank_trainer(tmp_path, **exchange)
    trainer.fit(Tiny(cycle_momentum=False))
    assert trainer.global_step == 1 and trainer.strategy.dgc_state.compressor.momentum == 0.9


def test_refuses_find_unused_parameters():
    with pytest.raises(ValueError, match=r"find_unused_parameters=True.*lost without a word.*requires_grad=False"):
        dgc(find_unused_parameters=True)


@pytest.mark.parametrize("clip_norm", [0.0, -1.0])
def test_clip_norm_is_checked_at_construction(clip_norm):
    with pytest.raises(ValueError, match=r"clip_norm must be positive"):
        dgc(clip_norm=clip_norm)


def test_refuses_fp16_precision():
    with pytest.raises(ValueError, match=r"precision='16-true'.*bf16-mixed"):
        pl.Trainer(accelerator="cpu", devices=2, strategy=dgc(), precision="16-true", logger=False)
    scaler = torch.amp.GradScaler("cpu")
    with pytest.raises(ValueError, match=r"precision='16-mixed'.*bf16-mixed"):
        dgc(precision_plugin=MixedPrecision("16-mixed", "cpu", scaler=scaler))
    pl.Trainer(accelerator="cpu", devices=2, strategy=dgc(), precision="bf16-mixed", logger=False)  # allowed


def test_refuses_its_own_hook_being_replaced():
    with pytest.raises(ValueError, match="installs its own communication hook"):
        dgc(ddp_comm_hook=lambda state, bucket: None)


def test_registered_under_a_short_name():
    import strategies

    strategies.dgc.register()  # a second registration is a no-op, not an error
    assert "dgc" in StrategyRegistry and "dgc_spawn" in StrategyRegistry
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="dgc_spawn", logger=False)
    assert isinstance(trainer.strategy, DGCStrategy)
    assert type(StrategyRegistry.get("ddp")).__name__ == "DDPStrategy"


@pytest.mark.parametrize("preset", ["dgc_cpu.yaml", "dgc.yaml"])
@pytest.mark.parametrize("model", ["kws/demo.yaml", "asr/demo.yaml"])
def test_preset_turns_dgc_on_for_model_configs(preset, model, monkeypatch):
    from lit_app.cli import LitAppCLI

    monkeypatch.setattr("sys.argv", ["lit-app"])  # LightningCLI warns when pytest's own arguments are present

    args = ["-c", str(REPO / "configs" / model), "-c", str(REPO / "configs/trainer" / preset)]
    if preset == "dgc.yaml":  # the GPU preset: parse it, do not build a CUDA Trainer on a CPU machine
        args += ["--trainer.accelerator", "cpu"]
    cli = LitAppCLI(args=args, run=False)
    assert isinstance(cli.trainer.strategy, DGCStrategy)
    assert cli.model.optimizer_name == "sgd"
    assert not cli.trainer.gradient_clip_val
    names = [type(c).__name__ for c in cli.trainer.callbacks]
    assert "DGCMonitor" in names and "RunCheckpoint" in names  # the model config's callbacks are kept
