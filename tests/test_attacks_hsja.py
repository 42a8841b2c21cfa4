"""HopSkipJump (decision-based: the top label only) on the tiny keyword victims of test_attacks.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lit_app.attacks import ClassifierVictim, HopSkipJump, QueryOnlyView, metrics
from lit_app.attacks.hop_skip_jump import LabelOracle, synthetic_signals
from tests.test_attacks import SAMPLES, Overconfident, on_grid, padded_tones, ranked_targets, tiny_kws, tones

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def l2_int16(clean: torch.Tensor, adversarial: torch.Tensor) -> torch.Tensor:
    return ((adversarial - metrics.quantize(clean)) * 32768).norm(dim=1)


def test_hop_skip_jump_reaches_easy_targets_and_shrinks_its_perturbation_with_more_queries():
    victim = tiny_kws()
    x, lengths = padded_tones()
    targets = ranked_targets(victim, x, 2)  # no clip of the batch is labelled so: synthetic starts (measured)
    short = HopSkipJump(max_queries=300, start_queries=100)(victim, x, lengths, targets, seed=0)
    long = HopSkipJump(max_queries=1000, start_queries=100)(victim, x, lengths, targets, seed=0)
    for out in (short, long):
        # Every clip returned was asked about and labelled as the target; on the grid, padding untouched.
        assert all(r.success and r.prediction == r.target for r in out.results)
        assert on_grid(out.adversarial) and torch.all(out.adversarial[2, 3000:] == 0)
    # The budget is spent (short of a last gradient estimate's reserve), over several iterations.
    assert all(1000 - 32 < r.queries <= 1000 and r.iterations >= 5 for r in long.results)
    shorter, longer = l2_int16(x, short.adversarial), l2_int16(x, long.adversarial)
    assert torch.all(longer < shorter) and longer.sum() < 0.5 * shorter.sum()


class TopLabelOnly(nn.Module):
    """The wrapped classifier's decision with nothing else: a fixed logit of 5 on its top class, 0 elsewhere."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.inner, self.labels, self.hparams = module, module.labels, module.hparams

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        logits = self.inner(waveforms)
        return 5.0 * F.one_hot(logits.argmax(-1), logits.shape[-1]).float()


def test_hop_skip_jump_sees_the_top_label_only():
    """Victims that agree on every decision but not on their probabilities give the same attack.

    The untrained victim itself is not one of them: its float32 softmax can round two nearly equal classes to one
    probability, and the view's top label is then the first of the two (seen on an Intel Xeon: one sample of one clip
    one step apart). Its logits times 7 and times 30 separate every class the view compares."""
    base = tiny_kws()
    x, lengths = padded_tones()
    targets = ranked_targets(base, x, 2)
    attack = HopSkipJump(max_queries=200, start_queries=100)
    outputs = [attack(ClassifierVictim(victim), x, lengths, targets, seed=0) for victim in
               (TopLabelOnly(base.module), Overconfident(base.module, 7.0), Overconfident(base.module, 30.0))]
    for out in outputs[1:]:
        assert torch.equal(out.adversarial, outputs[0].adversarial) and out.results == outputs[0].results


def test_hop_skip_jump_asks_the_query_only_view_and_counts_every_query():
    victim = tiny_kws()
    x, lengths = padded_tones()
    index = torch.tensor([victim.labels.index(t) for t in ranked_targets(victim, x, 2)])
    grad_modes = []
    victim.module.register_forward_hook(lambda *_: grad_modes.append(torch.is_grad_enabled()))
    view = QueryOnlyView(victim)
    _, queries, _ = HopSkipJump(max_queries=300, start_queries=100).search(
        view, metrics.quantize(x), lengths, index, torch.Generator().manual_seed(0))
    assert view.queries == int(queries.sum()) and int(queries.max()) <= 300
    assert grad_modes and not any(grad_modes) and all(p.grad is None for p in victim.module.parameters())


class Loudness(nn.Module):
    """Labels a clip ``loud`` when its RMS is above 0.1, ``quiet`` otherwise (``never`` is never the answer)."""

    labels = ["quiet", "loud", "never"]
    hparams = {"clip_samples": SAMPLES}

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        loud = (waveforms.pow(2).mean(1).sqrt() > 0.1).float()
        return torch.stack([1 - loud, loud, torch.full_like(loud, -1.0)], 1)


def test_hop_skip_jump_starts_from_a_clip_of_its_batch_or_reports_failure():
    victim = ClassifierVictim(Loudness())
    x = torch.cat([tones((300.0,)) * 0.2, tones((500.0,)) * 3])  # quiet, loud
    lengths = torch.full((2,), SAMPLES)
    clean = metrics.quantize(x)
    queries = torch.zeros(2, dtype=torch.long)
    attack = HopSkipJump(max_queries=300, start_queries=40)
    ask = LabelOracle(QueryOnlyView(victim), torch.tensor([1, 1]), queries, attack.max_queries)
    start, found = attack.starting_points(ask, torch.round(clean * 32768), torch.ones(2, SAMPLES), lengths,
                                          torch.Generator().manual_seed(0))
    # The quiet clip starts from the loud one, found with a single query; the loud one needs no batch-mate: the
    # quiet clip is not "loud", so its start is a synthetic signal, found within the search's budget.
    assert found.tolist() == [True, True] and torch.equal(start[0], torch.round(clean[1] * 32768))
    assert queries[0] == 1 and 1 < queries[1] <= 40
    # A target the victim never gives: no start, the clean clip comes back and the result says so.
    out = attack(victim, x, lengths, ["never", "never"], seed=0)
    assert not any(r.success for r in out.results) and torch.equal(out.adversarial, clean)
    assert all(r.queries == 40 and r.iterations == 0 for r in out.results)


def test_synthetic_start_signals_have_unit_rms_and_a_window():
    signals = synthetic_signals(32, 4000, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert signals.shape == (32, 4000) and torch.allclose(signals.pow(2).mean(1), torch.ones(32), atol=1e-4)
    assert (signals.abs() < 1e-6).float().mean() > 0.05  # the windows leave parts of the clips silent
