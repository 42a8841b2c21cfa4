"""DGC tier 1: the compressor's tensor math, with N ranks simulated in one process (no process group)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from strategies.dgc import codec, wire
from strategies.dgc.compressor import CompressorSettings, DGCCompressor
from strategies.dgc.schedule import PAPER_WARMUP, DensitySchedule
from strategies.dgc.selection import TopKPlan, tensor_k

SHAPES = [(24, 16), (16,), (8, 24), (8,), (3, 5, 7)]


def make_params(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g) for s in SHAPES]


def rank_grads(params: list[torch.Tensor], world: int, step: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + step)
    return [torch.cat([torch.randn(p.numel(), generator=g) for p in params]) for _ in range(world)]


def exchange(compressors, buckets, grads, density, world, force_dense=False):
    """One simulated step: every rank compresses every bucket, the messages are combined as the collectives
    would (sum for the dense all-reduce, concatenation for the all-gather; for reduce_scatter, owner j gets
    row j of every rank, then its reduced row is all-gathered), every rank decodes."""
    update = torch.zeros_like(grads[0])
    for params, (start, stop) in buckets:
        packets = [
            c.compress(params, g[start:stop].clone(), world, density, force_dense, rank=r)
            for r, (c, g) in enumerate(zip(compressors, grads))
        ]
        if packets[0].kind == "dense":
            received = torch.stack([p.payload for p in packets]).sum(0)
        elif packets[0].kind == "scatter":
            rows = [torch.stack([p.payload[owner] for p in packets]) for owner in range(world)]
            received = torch.cat([c.reduce(p, rows[r]) for r, (c, p) in enumerate(zip(compressors, packets))])
        else:
            received = torch.cat([p.payload for p in packets])
        results = [c.decompress(p, received, world) for c, p in zip(compressors, packets)]
        for r in results[1:]:
            assert torch.equal(r, results[0])  # every rank applies the same update
        update[start:stop] = results[0]
    return update


def one_bucket(params):
    return [(params, (0, sum(p.numel() for p in params)))]


def run_dgc(settings, momentum, nesterov, wd, density, world=2, steps=6, lr=0.1, buckets_fn=one_bucket, force_dense_steps=0):
    params = make_params()
    compressors = [DGCCompressor(settings) for _ in range(world)]
    for c in compressors:
        c.configure_optimizer(momentum, nesterov, {p: wd for p in params})
    for step in range(steps):
        grads = rank_grads(params, world, step)
        update = exchange(compressors, buckets_fn(params), grads, density, world, step < force_dense_steps)
        offset = 0
        for p in params:
            p -= lr * update[offset : offset + p.numel()].view(p.shape)
            offset += p.numel()
    return params, compressors


def run_sgd(momentum, nesterov, wd, world=2, steps=6, lr=0.1):
    params = [p.requires_grad_() for p in make_params()]
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=wd)
    for step in range(steps):
        mean = torch.stack(rank_grads(params, world, step)).mean(0)
        offset = 0
        for p in params:
            p.grad = mean[offset : offset + p.numel()].view(p.shape).clone()
            offset += p.numel()
        opt.step()
    return [p.detach() for p in params]


def assert_close(a, b, atol=1e-6):
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, atol=atol, rtol=0)


EXACT = CompressorSettings(momentum_masking=False, dense_fallback=False, min_compress_numel=16)
SCATTER = dataclasses.replace(EXACT, aggregation="reduce_scatter")


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("world", [2, 3])
def test_density_one_without_masking_is_momentum_sgd(nesterov, world):
    dgc, _ = run_dgc(EXACT, 0.9, nesterov, 0.01, 1.0, world=world)
    assert_close(dgc, run_sgd(0.9, nesterov, 0.01, world=world))


@pytest.mark.parametrize("coding", ["int32", "block16"])
@pytest.mark.parametrize("world", [2, 3, 4])
def test_reduce_scatter_at_density_one_without_masking_is_momentum_sgd(world, coding):
    settings = dataclasses.replace(SCATTER, index_coding=coding)
    dgc, _ = run_dgc(settings, 0.9, False, 0.01, 1.0, world=world)
    assert_close(dgc, run_sgd(0.9, False, 0.01, world=world))


@pytest.mark.parametrize("masking", [False, True])
def test_reduce_scatter_on_one_rank_is_the_papers_exchange(masking):
    paper = dataclasses.replace(EXACT, momentum_masking=masking, index_coding="block16")
    ours = dataclasses.replace(paper, aggregation="reduce_scatter")
    a, _ = run_dgc(paper, 0.9, False, 0.01, 0.05, world=1)
    b, _ = run_dgc(ours, 0.9, False, 0.01, 0.05, world=1)
    assert_close(a, b, atol=0)
    c, _ = run_dgc(ours, 0.9, False, 0.01, 0.05, world=2)
    assert not torch.allclose(a[0], c[0], atol=1e-3)  # the comparison can fail


def test_reduce_scatter_keeps_what_the_global_selection_dropped():
    # One 2x16 weight, k = 1 per tensor: each of the 2 ranges (16 entries) takes 1 entry.
    settings = CompressorSettings(min_compress_numel=16, dense_fallback=False, aggregation="reduce_scatter")
    params = [torch.zeros(2, 16)]
    compressors = [DGCCompressor(settings) for _ in range(2)]
    for c in compressors:
        c.configure_optimizer(0.9)
    grads = [torch.full((32,), 0.01), torch.full((32,), 0.01)]
    grads[0][3], grads[1][5] = 10.0, 9.0  # both in range 0: the owner keeps rank 0's larger entry
    grads[0][20], grads[1][20] = 1.0, 2.0  # both in range 1, the same entry: summed
    update = exchange(compressors, one_bucket(params), [g.clone() for g in grads], 1 / 32, 2)
    assert update.nonzero().squeeze(1).tolist() == [3, 20]
    assert update[3].item() == pytest.approx(5.0) and update[20].item() == pytest.approx(1.5)
    v0, v1 = (next(iter(c._layouts.values())).v for c in compressors)
    u0, u1 = (next(iter(c._layouts.values())).u for c in compressors)
    assert v1[5].item() == pytest.approx(9.0) and u1[5].item() == pytest.approx(9.0)  # sent, dropped, kept
    assert v0[3].item() == 0 and u0[3].item() == 0  # sent, kept: cleared and masked
    assert v0[20].item() == 0 and v1[20].item() == 0
    assert v0[5].item() == pytest.approx(0.01) and v1[3].item() == pytest.approx(0.01)  # never sent


@pytest.mark.parametrize("value_dtype", [torch.float32, torch.bfloat16, codec.FP8])
@pytest.mark.parametrize("aggregation", ["allgather", "reduce_scatter"])
def test_no_gradient_is_lost(aggregation, value_dtype):
    """Without momentum, what every rank holds in its residual plus N times the applied update is the sum of
    all gradients, whatever was selected, dropped or rounded on the way."""
    settings = CompressorSettings(momentum_masking=False, dense_fallback=False, min_compress_numel=16,
                                  value_dtype=value_dtype, aggregation=aggregation, index_coding="block16")
    world = 3
    params = make_params()
    compressors = [DGCCompressor(settings) for _ in range(world)]
    for c in compressors:
        c.configure_optimizer(0.0)
    total_grad = torch.zeros(sum(p.numel() for p in params))
    total_update = torch.zeros_like(total_grad)
    for step in range(4):
        grads = rank_grads(params, world, step)
        total_grad += sum(grads)
        total_update += exchange(compressors, one_bucket(params), [g.clone() for g in grads], 0.1, world)
    residual = sum(next(iter(c._layouts.values())).v for c in compressors)
    torch.testing.assert_close(residual + world * total_update, total_grad, atol=1e-5, rtol=0)
    assert residual.abs().max() > 0.1  # entries wait in the residuals


@pytest.mark.parametrize("aggregation", ["allgather", "reduce_scatter"])
def test_fp8_values_at_density_one_stay_close_to_momentum_sgd(aggregation):
    # Every entry is sent every step, so the only difference is each step's rounding error, sent a step later.
    settings = dataclasses.replace(EXACT, value_dtype=codec.FP8, index_coding="block16", aggregation=aggregation)
    fp8, _ = run_dgc(settings, 0.9, False, 0.01, 1.0, world=2, steps=10)
    sgd = run_sgd(0.9, False, 0.01, world=2, steps=10)
    for a, b, p in zip(fp8, sgd, make_params()):
        assert (a - b).norm() < 0.02 * (b - p).norm()
        assert not torch.equal(a, b)


def test_density_one_with_masking_is_sgd_without_momentum():
    settings = CompressorSettings(momentum_masking=True, dense_fallback=False, min_compress_numel=16)
    dgc, _ = run_dgc(settings, 0.9, False, 0.0, 1.0)
    plain, heavy = run_sgd(0.0, False, 0.0), run_sgd(0.9, False, 0.0)
    for p, x, y, z in zip(make_params(), dgc, plain, heavy):
        # Compressed tensors lose all momentum to the mask; dense (1-D) ones keep ordinary momentum.
        assert_close([x], [y if p.dim() > 1 else z])
        assert not torch.allclose(x, z if p.dim() > 1 else y, atol=1e-3)  # the comparison can fail


def test_dense_steps_then_sparse_continue_momentum_sgd():
    dgc, _ = run_dgc(EXACT, 0.9, False, 0.01, 1.0, force_dense_steps=3)
    assert_close(dgc, run_sgd(0.9, False, 0.01))


def test_weight_decay_is_not_weakened():
    # The trap: SGD(momentum=0, weight_decay=wd) after DGC would apply decay without momentum (~10x weaker).
    dgc, _ = run_dgc(EXACT, 0.9, False, 0.1, 1.0)
    assert_close(dgc, run_sgd(0.9, False, 0.1))
    assert not torch.allclose(dgc[0], run_sgd(0.9, False, 0.0)[0], atol=1e-3)


def test_sparse_step_sends_top_k_and_keeps_the_rest():
    world, density = 2, 0.1
    settings = CompressorSettings(momentum_masking=True, min_compress_numel=16, dense_fallback=False)
    params = make_params()
    compressors = [DGCCompressor(settings) for _ in range(world)]
    for c in compressors:
        c.configure_optimizer(0.9)
    grads = rank_grads(params, world, 0)
    update = exchange(compressors, one_bucket(params), [g.clone() for g in grads], density, world)

    expected = torch.zeros_like(grads[0])
    offset = 0
    for p in params:
        n = p.numel()
        for g in grads:
            part = g[offset : offset + n]
            if p.dim() > 1 and n >= 16:
                kept = torch.zeros_like(part)
                idx = part.abs().topk(math.ceil(density * n)).indices
                kept[idx] = part[idx]
                expected[offset : offset + n] += kept / world
            else:
                expected[offset : offset + n] += part / world
        offset += n
    torch.testing.assert_close(update, expected, atol=1e-7, rtol=0)

    layout = next(iter(compressors[0]._layouts.values()))
    sent = update != 0
    compressed = torch.zeros_like(sent)
    for s, n, c in zip(layout.starts, layout.numels, layout.compressed):
        compressed[s : s + n] = c
    residual_expected = torch.where(layout.v != 0, grads[0], torch.zeros(()))
    torch.testing.assert_close(layout.v, residual_expected)  # unsent entries wait in v
    assert torch.all(layout.v[~compressed] == 0)  # dense tensors are emptied every step
    assert torch.all(layout.u[compressed & (layout.v == 0)] == 0)  # momentum factor masking
    assert torch.all(layout.u[~compressed] != 0)  # dense tensors keep their momentum


def test_clipping_uses_the_rank_share_of_the_bound():
    world, clip = 4, 1.0
    settings = CompressorSettings(clip_norm=clip, momentum_masking=False, dense_fallback=False, min_compress_numel=16)
    compressor = DGCCompressor(settings)
    params = make_params()
    grad = torch.cat([torch.full((p.numel(),), 10.0) for p in params])
    grad[:384] = 1e-3  # the first tensor stays under the bound
    compressor.compress(params, grad.clone(), world, 1.0, force_dense=True)
    layout = next(iter(compressor._layouts.values()))
    for i, (s, n) in enumerate(zip(layout.starts, layout.numels)):
        norm = layout.u[s : s + n].norm().item()
        if i == 0:
            assert norm == pytest.approx(grad[:384].norm().item())
        else:
            assert norm == pytest.approx(clip / math.sqrt(world), rel=1e-4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_16bit_values_leave_rounding_error_in_residual(dtype):
    settings = CompressorSettings(value_dtype=dtype, momentum_masking=False, dense_fallback=False, min_compress_numel=16)
    compressor = DGCCompressor(settings)
    params = make_params()
    grad = torch.randn(sum(p.numel() for p in params)) * 1.2345
    packet = compressor.compress(params, grad.clone(), 1, 1.0)
    update = compressor.decompress(packet, packet.payload, 1)
    layout = packet.layout
    torch.testing.assert_close(update + layout.v, grad, atol=1e-6, rtol=0)  # nothing lost, only delayed
    assert layout.v.abs().max() > 0


def test_fp16_saturates_instead_of_overflowing():
    settings = CompressorSettings(value_dtype=torch.float16, dense_fallback=False, min_compress_numel=16)
    compressor = DGCCompressor(settings)
    params = make_params()
    grad = torch.zeros(sum(p.numel() for p in params))
    grad[0] = 1e6
    packet = compressor.compress(params, grad, 1, 0.01)
    update = compressor.decompress(packet, packet.payload, 1)
    assert torch.isfinite(update).all() and torch.isfinite(packet.layout.v).all()
    assert update[0] + packet.layout.v[0] == pytest.approx(1e6)


def test_tensor_selection_is_exact_per_tensor_top_k():
    g = torch.Generator().manual_seed(3)
    sizes = [5, 7, 300, 310, 520, 4096, 1000, 1024, 9]  # several share a size class, some are alone
    score = torch.rand(sum(sizes) + 3, generator=g)
    starts = [3]
    for n in sizes[:-1]:
        starts.append(starts[-1] + n)
    for density in (0.001, 0.05, 0.3, 1.0):
        expected = torch.cat([score[s : s + n].topk(tensor_k(n, density)).indices + s for s, n in zip(starts, sizes)])
        for batched in (True, False):
            plan = TopKPlan(starts, sizes, density, "tensor", torch.device("cpu"), batched=batched)
            chosen = plan.select(score)
            assert chosen.numel() == plan.k == sum(max(1, math.ceil(density * n - 1e-9)) for n in sizes)
            assert set(chosen.tolist()) == set(expected.tolist())
            # batched (the GPU default): fewer top-k calls than tensors; unbatched (CPU): one each, in place
            assert (len(plan.groups) < len(sizes)) if batched else (len(plan.groups) == len(sizes))


def test_bucket_selection_is_one_global_top_k():
    score = torch.rand(2000, generator=torch.Generator().manual_seed(4))
    starts, sizes = [0, 600, 1500], [500, 800, 400]  # gaps between them hold dense tensors
    plan = TopKPlan(starts, sizes, 0.01, "bucket", torch.device("cpu"))
    member = torch.zeros(2000, dtype=torch.bool)
    for s, n in zip(starts, sizes):
        member[s : s + n] = True
    candidates = member.nonzero().squeeze(1)
    expected = candidates[score[candidates].topk(plan.k).indices]
    assert plan.k == 5 + 8 + 4 and len(plan.groups) == 1
    assert set(plan.select(score).tolist()) == set(expected.tolist())


@pytest.mark.parametrize(("k", "space"), [(7, 100), (300, 200_000), (70_000, 300_000), (1, 1)])
@pytest.mark.parametrize("coding", ["int32", "block16"])
def test_index_codes_round_trip_at_their_size(k, space, coding):
    g = torch.Generator().manual_seed(k)
    rows = torch.stack([torch.randperm(space, generator=g)[:k] for _ in range(3)])
    rows[0, 0] = space - 1  # the last position and, for block16, a block boundary case
    encoded, order = codec.encode_indices(rows, space, coding)
    assert encoded.shape == (3, codec.index_bytes(k, space, coding))
    decoded = codec.decode_indices(encoded, k, space, coding)
    expected = rows if order is None else torch.gather(rows, 1, order)
    assert torch.equal(decoded, expected)
    if coding == "block16":  # 2 bytes per index, and a count per 64 Ki block (16 bits up to 65,535 entries)
        assert codec.index_bytes(k, space, coding) == 2 * k + math.ceil(space / 65536) * (2 if k < 65536 else 4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, codec.FP8])
def test_value_codes_round_trip_at_their_size(dtype):
    values = torch.randn(2, 50, generator=torch.Generator().manual_seed(0)) * torch.tensor([[1e-4], [30.0]])
    encoded, sent = codec.encode_values(values, dtype)
    assert encoded.shape == (2, codec.value_bytes(50, dtype)) and encoded.dtype == torch.uint8
    torch.testing.assert_close(codec.decode_values(encoded, 50, dtype), sent)
    error = ((sent - values).abs() / values.abs().amax(1, keepdim=True)).max().item()
    assert error <= {torch.float32: 0, torch.float16: 1e-3, torch.bfloat16: 4e-3, codec.FP8: 0.07}[dtype]
    if dtype == codec.FP8:  # each row has its own scale, so small rows keep their precision
        assert codec.value_bytes(50, dtype) == 54 and torch.isfinite(sent).all()


def test_message_sizes_match_the_wire_formulas():
    params = make_params()
    numel = sum(p.numel() for p in params)
    for aggregation in ("allgather", "reduce_scatter"):
        for dtype, coding in ((torch.float32, "int32"), (torch.bfloat16, "block16"), (codec.FP8, "block16")):
            settings = CompressorSettings(min_compress_numel=16, dense_fallback=False, value_dtype=dtype,
                                          index_coding=coding, aggregation=aggregation)
            packet = DGCCompressor(settings).compress(params, torch.randn(numel), 4, 0.1)
            if aggregation == "allgather":
                k = sum(tensor_k(p.numel(), 0.1) for p in params if p.dim() > 1)
                # 3 weight tensors and 2 dense ones: fp8 adds a 4-byte scale for each
                assert packet.payload_bytes == wire.row_bytes(k, numel, 16 + 8, dtype, coding, 3, 2)
                assert packet.wire_bytes == 3 * packet.payload_bytes
            else:
                plan = packet.scatter
                # each tensor's budget split over 4 ranges: ceil(ceil(0.1 n) / 4) entries per range
                assert plan.k == sum(math.ceil(tensor_k(p.numel(), 0.1) / 4) for p in params if p.dim() > 1)
                assert packet.payload.shape == (4, plan.row_bytes)
                share = math.ceil(16 / 4) + math.ceil(8 / 4)  # each dense tensor is cut into 4 shares
                assert plan.row_bytes == wire.row_bytes(plan.k, plan.slots, share, dtype, coding, 3, 2)
                assert packet.wire_bytes == 3 * 2 * plan.row_bytes


def test_resnet50_ratio_from_the_reference_notes():
    # ResNet-50 at 0.1%: 25,533 sent entries and 54,120 dense 1-D values of 25,557,032 parameters.
    def ratio(dtype):
        return 25_557_032 * 4 / wire.sparse_payload_bytes(25_533, 54_120, dtype, "int32", 25_557_032)

    assert ratio(torch.float32) == pytest.approx(243, abs=0.5)  # as in the notes
    # The notes' 276.5x for fp16 values keeps the 1-D tensors in fp32; here they travel in 16 bits too.
    assert ratio(torch.float16) == pytest.approx(25_557_032 * 4 / (25_533 * 6 + 54_120 * 2))


@pytest.mark.parametrize(
    ("density", "world", "dense"),
    [(0.25, 2, False), (0.25, 4, True), (0.5, 2, True), (0.001, 512, False), (0.001, 1001, True), (1.0, 2, True)],
)
def test_dense_fallback_when_all_gather_moves_more(density, world, dense):
    n = 1_000_000
    k = tensor_k(n, density)
    sparse = wire.allgather_wire_bytes(wire.sparse_payload_bytes(k, 0, torch.float32, "int32", n), world)
    assert wire.prefer_dense(sparse, n, torch.float32, world) is dense


def test_warmup_never_sparser_than_the_final_density():
    schedule = DensitySchedule(0.01, PAPER_WARMUP, "step", 1)
    assert [schedule.at(0, step) for step in range(6)] == [0.25, 0.0625, 0.015625, 0.01, 0.01, 0.01]


def test_paper_warmup_schedule():
    schedule = DensitySchedule(0.001, PAPER_WARMUP, "epoch", 1)
    assert [schedule.at(e, 0) for e in range(6)] == [0.25, 0.0625, 0.015625, 0.004, 0.001, 0.001]
    by_steps = DensitySchedule(0.01, (0.5, 0.1), "step", 10)
    assert [by_steps.at(0, s) for s in (0, 9, 10, 19, 20, 1000)] == [0.5, 0.5, 0.1, 0.1, 0.01, 0.01]
    with pytest.raises(ValueError, match="densities"):
        DensitySchedule(0.0)


@pytest.mark.parametrize("compact", [False, True], ids=["paper", "reduce_scatter fp8 block16"])
def test_state_follows_parameters_when_buckets_change(compact):
    """DDP rebuilds buckets after the first step; per-parameter state must move, so that training equals a
    run that always had the final buckets (per-tensor selection, ranges and fp8 scales do not depend on
    bucketing: this is what makes a resumed run, whose first step has DDP's first buckets, exact)."""
    settings = CompressorSettings(min_compress_numel=16, dense_fallback=False)
    if compact:
        settings = dataclasses.replace(settings, aggregation="reduce_scatter", value_dtype=codec.FP8,
                                       index_coding="block16")

    def first(params):  # two buckets, as DDP builds them before the rebuild
        return [(params[:2], (0, 400)), (params[2:], (400, 400 + sum(p.numel() for p in params[2:]))) ]

    def rebuilt(params):  # the whole model in one bucket
        return one_bucket(params)

    def run(buckets_for_step):
        params = make_params()
        compressors = [DGCCompressor(settings) for _ in range(2)]
        for c in compressors:
            c.configure_optimizer(0.9, False, {p: 0.01 for p in params})
        for step in range(6):
            grads = rank_grads(params, 2, step)
            update = exchange(compressors, buckets_for_step(step)(params), grads, 0.05, 2)
            offset = 0
            for p in params:
                p -= 0.1 * update[offset : offset + p.numel()].view(p.shape)
                offset += p.numel()
        return params, compressors

    moved, compressors = run(lambda step: first if step < 2 else rebuilt)
    fixed, _ = run(lambda step: rebuilt)
    assert_close(moved, fixed, atol=1e-7)
    assert len(compressors[0]._layouts) == 1  # the old buckets' state was released


def test_state_dict_resumes_exactly():
    settings = CompressorSettings(min_compress_numel=16, dense_fallback=False)
    params = make_params()
    names = {p: f"p{i}" for i, p in enumerate(params)}
    straight = [DGCCompressor(settings, names) for _ in range(2)]
    for c in straight:
        c.configure_optimizer(0.9)
    updates = [exchange(straight, one_bucket(params), rank_grads(params, 2, s), 0.05, 2) for s in range(3)]

    resumed = [DGCCompressor(settings, names) for _ in range(2)]
    for c in resumed:
        c.configure_optimizer(0.9)
    restart = [DGCCompressor(settings, names) for _ in range(2)]
    for c in restart:
        c.configure_optimizer(0.9)
    for s in range(2):
        exchange(resumed, one_bucket(params), rank_grads(params, 2, s), 0.05, 2)
        exchange(restart, one_bucket(params), rank_grads(params, 2, s), 0.05, 2)
    saved = [c.state_dict() for c in resumed]
    fresh = [DGCCompressor(settings, names) for _ in range(2)]
    for c, state in zip(fresh, saved):
        c.configure_optimizer(0.9)
        c.load_state_dict(state)  # before any bucket exists: kept until the parameters show up
    torch.testing.assert_close(exchange(fresh, one_bucket(params), rank_grads(params, 2, 2), 0.05, 2), updates[2])
    lost = [DGCCompressor(settings, names) for _ in range(2)]
    for c in lost:
        c.configure_optimizer(0.9)
    assert not torch.allclose(exchange(lost, one_bucket(params), rank_grads(params, 2, 2), 0.05, 2), updates[2])
