"""DGC tier 2: the communication hook inside real DDP models on a 2-rank gloo group (one spawn for all checks)."""

from __future__ import annotations

import math
import socket
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from strategies.dgc.codec import FP8
from strategies.dgc.compressor import CompressorSettings, DGCCompressor
from strategies.dgc.hook import DGCHookState, dgc_hook

WORLD = 2
STEPS = 5
LR = 0.05


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(fn, world: int, args: tuple, timeout: float) -> None:
    """``mp.spawn`` with a hard deadline: a hung collective terminates the ranks instead of the test suite."""
    context = mp.start_processes(fn, args=args, nprocs=world, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    try:
        while not context.join(timeout=max(0.1, deadline - time.monotonic())):
            if time.monotonic() > deadline:
                raise TimeoutError(f"ranks did not finish within {timeout} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.terminate()


def make_model(sizes: list[int], bias: bool) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [nn.Linear(a, b, bias=bias), nn.Tanh()]
    return nn.Sequential(*layers[:-1])


def batch(rank: int, step: int, sizes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 * step + rank)
    return torch.randn(16, sizes[0], generator=g), torch.randn(16, sizes[-1], generator=g)


def dgc_model(sizes, bias, settings, density, dense_steps, momentum, wd, bucket_cap_mb=25.0):
    model = make_model(sizes, bias)
    ddp = DDP(model, bucket_cap_mb=bucket_cap_mb)
    compressor = DGCCompressor(settings, {p: n for n, p in model.named_parameters()})
    state = DGCHookState(compressor, None, density, dense_steps)
    ddp.register_comm_hook(state, dgc_hook)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.0)  # the hook owns momentum and decay
    compressor.configure_optimizer(momentum, False, {p: wd for p in model.parameters()})
    return model, ddp, state, optimizer


def reference(sizes, bias, momentum, wd, steps=STEPS, world=WORLD) -> list[torch.Tensor]:
    """Single-process SGD on the gradient averaged over all ranks' batches."""
    model = make_model(sizes, bias)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=momentum, weight_decay=wd)
    for step in range(steps):
        optimizer.zero_grad()
        loss = sum(nn.functional.mse_loss(model(x), y) for x, y in (batch(r, step, sizes) for r in range(world)))
        (loss / world).backward()
        optimizer.step()
    return [p.detach().clone() for p in model.parameters()]


def train(sizes, ddp, optimizer, rank, steps=STEPS, before_step=None):
    for step in range(steps):
        if before_step is not None:
            before_step(step)
        optimizer.zero_grad()
        x, y = batch(rank, step, sizes)
        nn.functional.mse_loss(ddp(x), y).backward()
        optimizer.step()


def scenario_equivalence(rank: int) -> dict:
    sizes = [32, 64, 64, 8]
    out = {}
    exact = CompressorSettings(momentum_masking=False, dense_fallback=False, min_compress_numel=1)
    model, ddp, state, optimizer = dgc_model(sizes, True, exact, 1.0, 0, 0.9, 1e-3)
    train(sizes, ddp, optimizer, rank)
    out["comm_hook"] = ddp._get_ddp_logging_data().get("comm_hook")
    out["momentum_params"] = [p.detach().clone() for p in model.parameters()]
    out["momentum_reference"] = reference(sizes, True, 0.9, 1e-3)
    out["momentum_dense_buckets"] = state.last_step.dense_buckets

    masked = CompressorSettings(momentum_masking=True, dense_fallback=False, min_compress_numel=1)
    model, ddp, _, optimizer = dgc_model(sizes, False, masked, 1.0, 0, 0.9, 0.0)
    train(sizes, ddp, optimizer, rank)
    out["masked_params"] = [p.detach().clone() for p in model.parameters()]
    out["masked_reference"] = reference(sizes, False, 0.0, 0.0)
    out["masked_momentum_reference"] = reference(sizes, False, 0.9, 0.0)
    return out


def scenario_bytes(rank: int) -> dict:
    sizes = [256, 512, 256, 10]
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        settings = CompressorSettings(value_dtype=dtype)
        model, ddp, state, optimizer = dgc_model(sizes, True, settings, 0.001, 0, 0.9, 0.0, bucket_cap_mb=0.3)
        steps = []
        for step in range(2):  # DDP rebuilds its buckets after the first step
            optimizer.zero_grad()
            x, y = batch(rank, step, sizes)
            nn.functional.mse_loss(ddp(x), y).backward()
            stats = state.last_step
            steps.append({"bytes_sent": stats.bytes_sent, "dense_bytes": stats.dense_bytes, "buckets": stats.buckets,
                          "dense_buckets": stats.dense_buckets, "ratio": stats.compression_ratio})
            if step == 0 and name == "fp32":
                out["update"] = [p.grad.detach().clone() for p in model.parameters()]
            optimizer.step()
        out[name] = steps
    local = []
    for r in range(WORLD):  # each rank's own first-step gradient, recomputed without DDP
        twin = make_model(sizes, True)
        xr, yr = batch(r, 0, sizes)
        nn.functional.mse_loss(twin(xr), yr).backward()
        local.append([p.grad.detach().clone() for p in twin.parameters()])
    out["local_grads"] = local
    return out


def scenario_schedule(rank: int) -> dict:
    sizes = [32, 64, 64, 8]
    settings = CompressorSettings(min_compress_numel=1)
    _, ddp, state, optimizer = dgc_model(sizes, True, settings, 1.0, 2, 0.9, 0.0)
    densities = [0.25, 0.25, 0.5, 0.25, 0.01]  # the first two steps are dense whatever the density
    seen = []

    def before_step(step):
        state.density = densities[step]
        if step:
            seen.append((state.last_step.density, state.last_step.dense_buckets, state.last_step.buckets))

    train(sizes, ddp, optimizer, rank, steps=len(densities), before_step=before_step)
    seen.append((state.last_step.density, state.last_step.dense_buckets, state.last_step.buckets))
    return {"seen": seen, "iteration": state.iteration}


def scenario_scatter(rank: int, world: int) -> dict:
    """The reduce-scatter exchange: exact at density 1, and compact (fp8, block16) at low density."""
    sizes = [32, 64, 64, 8]
    out = {}
    exact = CompressorSettings(momentum_masking=False, dense_fallback=False, min_compress_numel=1,
                               aggregation="reduce_scatter")
    model, ddp, state, optimizer = dgc_model(sizes, True, exact, 1.0, 0, 0.9, 1e-3, bucket_cap_mb=0.01)
    train(sizes, ddp, optimizer, rank)
    out["comm_hook"] = ddp._get_ddp_logging_data().get("comm_hook")
    out["exact_params"] = [p.detach().clone() for p in model.parameters()]
    out["exact_reference"] = reference(sizes, True, 0.9, 1e-3, world=world)
    out["exact_buckets"] = (state.last_step.buckets, state.last_step.dense_buckets)

    compact = CompressorSettings(value_dtype=FP8, index_coding="block16", aggregation="reduce_scatter",
                                 min_compress_numel=1, dense_fallback=False)
    model, ddp, state, optimizer = dgc_model(sizes, True, compact, 0.05, 1, 0.9, 1e-3)
    train(sizes, ddp, optimizer, rank)
    out["compact_params"] = [p.detach().clone() for p in model.parameters()]
    stats = state.last_step
    out["compact_wire"] = (stats.wire_bytes, stats.dense_wire_bytes, stats.dense_buckets)
    shapes = [tuple(p.shape) for p in model.parameters()]
    out["compact_expected_wire"] = expected_scatter_wire(shapes, 0.05, world)
    return out


def expected_scatter_wire(shapes, density: float, world: int) -> float:
    """Wire bytes per rank of one bucket holding ``shapes``: N-1 rows out in each of the two phases."""
    k = slots = share = 0
    for shape in shapes:
        n = math.prod(shape)
        if len(shape) > 1:
            width = math.ceil(n / world)
            k += min(width, math.ceil(math.ceil(n * density) / world))
            slots += width
        else:
            share += math.ceil(n / world)
    scales = 4 * len(shapes)  # fp8: one 4-byte scale per tensor
    row = 2 * k + 2 * max(1, math.ceil(slots / 65536)) + k + share + scales  # block16 indices, fp8 values
    return 2 * (world - 1) * row


def worker_scatter(rank: int, world: int, port: int, out_dir: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world, timeout=timedelta(seconds=60)
    )
    torch.set_num_threads(1)
    try:
        torch.save(scenario_scatter(rank, world), Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def worker(rank: int, port: int, out_dir: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD, timeout=timedelta(seconds=60)
    )
    torch.set_num_threads(1)
    try:
        results = {
            "equivalence": scenario_equivalence(rank),
            "bytes": scenario_bytes(rank),
            "schedule": scenario_schedule(rank),
        }
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module", params=[2, 4], ids=["2 ranks", "4 ranks"])
def scatter_results(request, tmp_path_factory):
    world = request.param
    out = tmp_path_factory.mktemp(f"dgc_scatter_{world}")
    run_ranks(worker_scatter, world, (world, free_port(), str(out)), timeout=150)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(world)]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("dgc_hook")
    run_ranks(worker, WORLD, (free_port(), str(out)), timeout=150)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def assert_params_close(actual, expected, atol=1e-6):
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, atol=atol, rtol=0)


pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(180)]


def test_hook_is_attached_on_cpu(results):
    assert results[0]["equivalence"]["comm_hook"] == "dgc_hook"


def test_density_one_without_masking_equals_momentum_sgd(results):
    for r in results:
        eq = r["equivalence"]
        assert eq["momentum_dense_buckets"] == 0  # the sparse path ran, not the dense fallback
        assert_params_close(eq["momentum_params"], eq["momentum_reference"])


def test_density_one_with_masking_equals_sgd_without_momentum(results):
    eq = results[0]["equivalence"]
    assert_params_close(eq["masked_params"], eq["masked_reference"])
    diff = max((a - b).abs().max().item() for a, b in zip(eq["masked_params"], eq["masked_momentum_reference"]))
    assert diff > 1e-3


def test_ranks_hold_identical_parameters(results):
    for key in ("momentum_params", "masked_params"):
        assert_params_close(results[0]["equivalence"][key], results[1]["equivalence"][key], atol=0)


def expected_bytes(shapes, value_bytes: int) -> int:
    """Bytes per rank and step at density 0.001: ceil(n/1000) (int32 index + value) per weight matrix,
    every element of the 1-D tensors as a value."""
    total = 0
    for shape in shapes:
        n = math.prod(shape)
        total += -(-n // 1000) * (4 + value_bytes) if len(shape) > 1 and n >= 1024 else n * value_bytes
    return total


def test_bytes_sent_at_density_0001_match_the_formula(results):
    shapes = [(512, 256), (512,), (256, 512), (256,), (10, 256), (10,)]
    numel = sum(math.prod(s) for s in shapes)
    for r in results:
        for name, vb in (("fp32", 4), ("bf16", 2)):
            for stats in r["bytes"][name]:
                assert stats["dense_buckets"] == 0
                assert stats["bytes_sent"] == expected_bytes(shapes, vb)
                assert stats["dense_bytes"] == 4 * numel
                assert stats["ratio"] == pytest.approx(4 * numel / expected_bytes(shapes, vb))
            assert r["bytes"][name][-1]["buckets"] > 1  # the formula holds per tensor, whatever the buckets
    assert results[0]["bytes"]["fp32"][0]["ratio"] > 100


def test_first_sparse_update_is_the_average_of_each_ranks_top_k(results):
    update, local = results[0]["bytes"]["update"], results[0]["bytes"]["local_grads"]
    for i, u in enumerate(update):
        expected = torch.zeros_like(u)
        for grads in local:
            g = grads[i]
            if g.dim() > 1 and g.numel() >= 1024:
                kept = torch.zeros(g.numel())
                idx = g.flatten().abs().topk(-(-g.numel() // 1000)).indices
                kept[idx] = g.flatten()[idx]
                expected += kept.view_as(g) / WORLD
            else:
                expected += g / WORLD
        torch.testing.assert_close(u, expected, atol=1e-7, rtol=1e-5)


def test_dense_steps_and_fallback_follow_the_schedule(results):
    seen = results[0]["schedule"]["seen"]
    buckets = seen[0][2]
    # steps 0-1: dense warm-up steps; step 2: 50% density, where 2 ranks' sparse all-gather moves as many
    # bytes as a dense all-reduce, so it falls back; 25% and 1% go sparse.
    assert seen == [(1.0, buckets, buckets), (1.0, buckets, buckets), (0.5, buckets, buckets), (0.25, 0, buckets), (0.01, 0, buckets)]
    assert results[0]["schedule"]["iteration"] == 5


def test_reduce_scatter_at_density_one_equals_momentum_sgd(scatter_results):
    for r in scatter_results:
        assert r["comm_hook"] == "dgc_hook"
        buckets, dense_buckets = r["exact_buckets"]
        assert buckets > 1 and dense_buckets == 0  # several buckets, all through the two sparse phases
        assert_params_close(r["exact_params"], r["exact_reference"])


def test_reduce_scatter_compact_messages_keep_ranks_in_step(scatter_results):
    first = scatter_results[0]
    for r in scatter_results:
        assert_params_close(r["compact_params"], first["compact_params"], atol=0)
        wire_bytes, dense_wire_bytes, dense_buckets = r["compact_wire"]
        assert dense_buckets == 0
        assert wire_bytes == r["compact_expected_wire"]
        assert dense_wire_bytes > 3 * wire_bytes
