"""Decoupled Direction and Norm (white-box, minimal L2) on the tiny keyword victim of test_attacks.py."""

from __future__ import annotations

import pytest
import torch

from lit_app.attacks import DDN, PGD, CTCVictim, metrics
from tests.test_attacks import SAMPLES, TinyCTC, on_grid, ranked_targets, tiny_kws, tones

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def l2_int16(clean: torch.Tensor, adversarial: torch.Tensor) -> torch.Tensor:
    return ((adversarial - metrics.quantize(clean)) * 32768).norm(dim=1)


def test_ddn_reaches_easy_targets_far_more_quietly_than_pgd():
    victim = tiny_kws()
    lengths = torch.tensor([SAMPLES, SAMPLES, 3000])
    x = tones((350.0, 600.0, 900.0)) * metrics.valid_mask(lengths, SAMPLES)
    targets = ranked_targets(victim, x, 2)
    out = DDN(steps=40, initial_norm=500, step_size=500)(victim, x, lengths, targets, seed=0)
    assert all(r.success for r in out.results) and on_grid(out.adversarial)
    assert torch.all(out.adversarial[2, 3000:] == 0)
    assert all(r.queries == 40 and r.iterations == 40 for r in out.results)  # every step, each one query
    pgd = PGD(epsilon=512, step_size=64, iterations=30)(victim, x, lengths, targets, seed=0)
    assert all(r.success for r in pgd.results)
    # Minimal L2: a small fraction of the L-infinity attack's norm, well above 40 dB SNR on these tones.
    ddn_l2, pgd_l2 = l2_int16(x, out.adversarial), l2_int16(x, pgd.adversarial)
    assert torch.all(ddn_l2 > 0) and torch.all(ddn_l2 < 0.05 * pgd_l2)
    assert all(r.snr_db > 40 for r in out.results)


def test_ddn_is_deterministic_and_leaves_a_clip_already_at_its_target_alone():
    victim = tiny_kws()
    x = tones((350.0, 800.0))
    lengths = torch.full((2,), SAMPLES)
    with torch.no_grad():
        already = victim.predict(metrics.quantize(x), lengths)
    targets = [already[0], ranked_targets(victim, x, 2)[1]]
    attack = DDN(steps=15, initial_norm=500, step_size=500)
    first, again = attack(victim, x, lengths, targets, seed=1), attack(victim, x, lengths, targets, seed=1)
    assert torch.equal(first.adversarial, again.adversarial) and first.results == again.results
    # The first check is on the clean clip: already the target, the smallest perturbation is none.
    assert first.results[0].success and first.results[0].linf == 0


def test_ddn_step_anneals_and_needs_a_classifier():
    attack = DDN(steps=100, step_size=1000)
    assert attack.step_length(0) == pytest.approx(1000) and attack.step_length(50) == pytest.approx(505)
    assert attack.step_length(99) == pytest.approx(10, abs=0.5)
    with pytest.raises(ValueError, match="gamma"):
        DDN(gamma=1.5)
    with pytest.raises(TypeError, match="classifier"):
        attack(CTCVictim(TinyCTC()), tones((300.0,)), torch.tensor([SAMPLES]), ["yes"])
