"""The Square Attack (score-based random search, L-infinity) on the tiny keyword victim of test_attacks.py."""

from __future__ import annotations

import pytest
import torch

from lit_app.attacks import QueryOnlyView, SquareAttack, metrics
from lit_app.attacks.square import margin_loss
from tests.test_attacks import SAMPLES, on_grid, padded_tones, ranked_targets, tiny_kws, tones

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def test_square_attack_reaches_easy_targets_on_the_vertices_of_its_bound():
    victim = tiny_kws()
    x, lengths = tones((350.0, 600.0, 900.0)), torch.full((3,), SAMPLES)
    targets = ranked_targets(victim, x, 2)
    out = SquareAttack(epsilon=256, max_queries=400)(victim, x, lengths, targets, seed=0)
    assert all(r.success and r.prediction == r.target for r in out.results)
    # Every sample moved by exactly epsilon: the perturbation lives on the vertices of the L-infinity ball.
    assert torch.all(((out.adversarial - metrics.quantize(x)) * 32768).abs() == 256)
    assert on_grid(out.adversarial) and all(r.linf == 256 for r in out.results)
    # One query for the random start, then one per iteration; successful clips stop at once.
    assert all(r.queries == r.iterations + 1 and r.queries < 400 for r in out.results)


def test_square_attack_leaves_padding_and_the_int16_range_alone():
    victim = tiny_kws()
    x, lengths = padded_tones()
    x[0] = torch.where(x[0] >= 0, 32767.0, -32768.0) / 32768 * metrics.valid_mask(lengths, SAMPLES)[0]  # full scale
    index = torch.tensor([victim.labels.index(t) for t in ranked_targets(victim, x, 2)])
    adversarial, _, _ = SquareAttack(epsilon=256, max_queries=20).search(
        QueryOnlyView(victim), metrics.quantize(x), lengths, index, torch.Generator().manual_seed(0))
    change = (adversarial - metrics.quantize(x)) * 32768
    assert torch.all(adversarial[2, 3000:] == 0) and torch.all(change[2, :3000].abs() == 256)
    assert torch.all(adversarial * 32768 <= 32767) and torch.all(adversarial * 32768 >= -32768)
    assert torch.all(change[0].abs() <= 256) and torch.all(change[1].abs() == 256)


def test_square_attack_uses_probabilities_only_and_counts_queries():
    victim = tiny_kws()
    x, lengths = padded_tones()
    index = torch.tensor([victim.labels.index(t) for t in ranked_targets(victim, x, 5)])  # hard: the budget runs out
    grad_modes = []
    victim.module.register_forward_hook(lambda *_: grad_modes.append(torch.is_grad_enabled()))
    view = QueryOnlyView(victim)
    adversarial, queries, iterations = SquareAttack(epsilon=64, max_queries=30).search(
        view, metrics.quantize(x), lengths, index, torch.Generator().manual_seed(0))
    assert view.queries == int(queries.sum()) and int(queries.max()) == 30 and torch.equal(queries, iterations + 1)
    # The clips still searching are asked about together: one forward pass per iteration.
    assert len(grad_modes) == 30 and not any(grad_modes)
    assert all(p.grad is None for p in victim.module.parameters())
    assert on_grid(adversarial)


def test_square_window_shrinks_on_the_papers_schedule_rescaled_to_the_budget():
    paper = SquareAttack(max_queries=10000, p_init=0.05)
    assert [paper.window_fraction(i) for i in (1, 10, 11, 50, 51, 9000, 10000)] == pytest.approx(
        [0.05, 0.05, 0.025, 0.025, 0.0125, 0.05 / 512, 0.05 / 512])
    small = SquareAttack(max_queries=1000, p_init=0.05)
    assert small.window_fraction(1) == 0.05 and small.window_fraction(2) == 0.025  # iteration 2 of 1000: 20 of 10,000


def test_square_margin_loss_is_negative_exactly_when_the_target_wins():
    probabilities = torch.tensor([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [1.0, 0.0, 0.0]])
    loss = margin_loss(probabilities, torch.tensor([1, 1, 1]))
    assert loss[0] > 0 > loss[1] and loss[1] == pytest.approx(torch.log(torch.tensor(0.2 / 0.7)).item())
    assert torch.isfinite(loss[2]) and loss[2] > 0  # an underflowed target probability still gives a finite loss
    with pytest.raises(ValueError, match="epsilon"):
        SquareAttack(epsilon=0.5)
