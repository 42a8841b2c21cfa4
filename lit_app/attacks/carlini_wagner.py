"""Carlini & Wagner's targeted audio attack ("Audio Adversarial Examples", 2018), for any differentiable victim.

A perturbation of the whole clip is optimised so the victim outputs the target (CTC loss for a speech
recogniser, cross-entropy for a classifier). Each step follows the *sign* of the gradient (through Adam, as the
original code does, or plainly), with a little Gaussian noise added to the input so the result survives
rounding. Every ``check_every`` steps the clip is rounded to 16-bit PCM and judged; on success it becomes the
clip's best result and the L-infinity bound shrinks.

How the bound shrinks (``bound_rule``):

- ``rescale``, as Carlini's released code: the optimised variable is a raw ``delta``; the clip hears
  ``clip(delta, -tau0, tau0) * rescale`` with ``rescale = 1`` at first, so the bound is ``tau0 * rescale``. On
  success, if the bound is above ``max|clip(delta)|`` it first drops to that peak (``rescale = peak / tau0``),
  then ``rescale *= decay``. Because ``rescale`` multiplies the whole perturbation, the perturbation shrinks as a
  whole and keeps its shape.
- ``clip``, lit-app's rule before 2026-12-05 (the corpora built before then): ``delta`` itself is clipped to the
  bound after every step, and on success the bound becomes ``min(bound, max|d|) * decay`` and ``delta`` is clipped
  to it, so only the samples above the new bound change.

The paper's attack runs all ``max_iterations`` steps. Clips may stop early inside a batch (the fast configs do):
at the first success (``shrink=False``), after ``patience`` checks without a new success, or once the bound falls
below ``min_bound``. Stopped clips leave the batch, so later steps run on the remaining ones only (trimmed to
their longest length).
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from lit_app.attacks.base import Attack, AttackBatch
from lit_app.attacks.victims import Victim, select
from lit_app.audio.pcm import FULL_SCALE, quantize


class CarliniWagner(Attack):
    """Targeted white-box attack with a shrinking L-infinity bound.

    Args:
        max_iterations: optimisation steps per clip at most (1000 in the paper).
        learning_rate: step size, int16 units (10 in the released code's attack class; its script passes 100).
        initial_bound: starting bound ``tau0`` of the perturbation, int16 units (2000).
        bound_decay: factor applied to the bound after each successful check (0.8).
        check_every: steps between success checks (10).
        noise_std: standard deviation of the Gaussian noise added before each forward pass, int16 units (2).
        optimizer: ``adam`` (Adam on the gradient sign, as Carlini & Wagner's code) or ``sign`` (plain
            signed-gradient steps).
        shrink: keep optimising after the first success to shrink the bound; ``False`` stops at once.
        patience: early stop: checks without a new success, after the first one, before a clip stops; ``None``
            runs every step (the paper).
        min_bound: early stop: a clip stops once its bound falls below this, int16 units; ``None``: never.
        bound_rule: ``rescale`` (the released code: the whole perturbation is scaled down) or ``clip`` (lit-app's
            rule before 2026-12-05: only the samples above the bound are cut); see the module docstring.
    """

    name = "cw"
    # The rescale rule came after the first corpora, which were built by the clip rule.
    recorded_unless = {"bound_rule": "clip"}

    def __init__(
        self,
        max_iterations: int = 1000,
        learning_rate: float = 10.0,
        initial_bound: float = 2000.0,
        bound_decay: float = 0.8,
        check_every: int = 10,
        noise_std: float = 2.0,
        optimizer: Literal["adam", "sign"] = "adam",
        shrink: bool = True,
        patience: int | None = None,
        min_bound: float | None = None,
        bound_rule: Literal["rescale", "clip"] = "rescale",
    ) -> None:
        if optimizer not in ("adam", "sign"):
            raise ValueError(f"optimizer must be 'adam' or 'sign', got {optimizer!r}")
        if bound_rule not in ("rescale", "clip"):
            raise ValueError(f"bound_rule must be 'rescale' or 'clip', got {bound_rule!r}")
        self.max_iterations = max_iterations
        self.learning_rate = learning_rate
        self.initial_bound = initial_bound
        self.bound_decay = bound_decay
        self.check_every = check_every
        self.noise_std = noise_std
        self.optimizer = optimizer
        self.shrink = shrink
        self.patience = patience
        self.min_bound = min_bound
        self.bound_rule = bound_rule

    def run(self, victim: Victim, batch: AttackBatch, **conditions: Any) -> torch.Tensor:
        clean, lengths, mask, targets, generator = batch.clean, batch.lengths, batch.mask, batch.targets, batch.generator
        queries, iterations, encoded = batch.queries, batch.iterations, batch.encoded
        size, device = clean.shape[0], clean.device
        lr, noise_std = self.learning_rate / FULL_SCALE, self.noise_std / FULL_SCALE
        delta = torch.zeros_like(clean)
        moment1, moment2 = torch.zeros_like(clean), torch.zeros_like(clean)
        # The rescale rule's bound is initial_bound * scale; the clip rule keeps scale at 1 and moves the bound.
        bound = torch.full((size,), self.initial_bound / FULL_SCALE, device=device)
        scale = torch.ones(size, device=device)
        best = clean.clone()
        succeeded = torch.zeros(size, dtype=torch.bool, device=device)
        failed_checks = torch.zeros(size, dtype=torch.long, device=device)
        active = batch.feasible_rows()
        for step in range(1, self.max_iterations + 1):
            if active.numel() == 0:
                break
            width = int(lengths[active].max())
            rows = self.rows(active, size)
            x, m, d = clean[rows, :width], mask[rows, :width], delta[rows, :width].detach().requires_grad_()
            noise = torch.randn(x.shape, device=device, generator=generator) * noise_std
            heard = self.perturbation(d, scale[active])
            loss = victim.loss((x + heard + noise * m).clamp(-1.0, 1.0), lengths[active], select(encoded, active))
            (gradient,) = torch.autograd.grad(loss.sum(), d)
            direction = self.direction(gradient.sign(), moment1, moment2, rows, width, step)
            with torch.no_grad():
                updated = d - lr * direction
                if self.bound_rule == "clip":
                    limit = bound[active].unsqueeze(1)
                    updated = torch.maximum(torch.minimum(updated, limit), -limit)
                updated = updated * m
                delta[rows, :width] = updated
            queries[active] += 1
            iterations[active] = step
            if step % self.check_every and step != self.max_iterations:
                continue
            with torch.no_grad():
                candidate = quantize((x + self.perturbation(updated, scale[active])).clamp(-1.0, 1.0)) * m
                predictions = victim.predict(candidate, lengths[active])
                queries[active] += 1
                hit = torch.tensor([p == targets[i] for p, i in zip(predictions, active.tolist())], device=device)
                winners = active[hit]
                best[winners, :width] = candidate[hit]
                if self.bound_rule == "clip":
                    reached = (candidate[hit] - x[hit]).abs().amax(1)
                    bound[winners] = torch.minimum(bound[winners], reached) * self.bound_decay
                    delta[winners] = torch.maximum(torch.minimum(delta[winners], bound[winners, None]),
                                                   -bound[winners, None])
                else:
                    scale[winners] = self.rescaled(delta[winners], scale[winners])
                    bound[winners] = scale[winners] * self.initial_bound / FULL_SCALE
                succeeded[winners] = True
                failed_checks[active] = torch.where(hit, 0, failed_checks[active] + 1)
                done = succeeded[active] & ((not self.shrink) | self.stops_early(failed_checks[active], bound[active]))
                active = active[~done]
        # Clips that never succeeded return their last state, for the record.
        last = quantize((clean + self.perturbation(delta, scale)).clamp(-1.0, 1.0)) * mask
        adversarial = torch.where(succeeded.unsqueeze(1), best, last)
        return adversarial.detach()

    def perturbation(self, delta: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """What the clip hears of the optimised ``delta`` (``[clips, samples]``, with ``scale`` per clip): under the
        rescale rule ``clip(delta, -tau0, tau0) * scale``; the clip rule keeps ``delta`` inside its bound already."""
        if self.bound_rule == "clip":
            return delta
        tau0 = self.initial_bound / FULL_SCALE
        return delta.clamp(-tau0, tau0) * scale.unsqueeze(1)

    def rescaled(self, delta: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """The scale after a successful check: first down to the peak of ``clip(delta)`` if the bound
        ``tau0 * scale`` is above it, then times ``bound_decay``. Carlini's code compares the bound with the raw
        delta's peak (above ``tau0`` it makes no difference: the bound is never above ``tau0``)."""
        tau0 = self.initial_bound / FULL_SCALE
        peak = delta.abs().amax(1).clamp(max=tau0)
        return torch.where(scale * tau0 > peak, peak / tau0, scale) * self.bound_decay

    def stops_early(self, failed_checks: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
        """Which successful clips stop before ``max_iterations``: ``patience`` checks without a new success, or a
        bound below ``min_bound`` (int16 units). Neither is set in the paper's config."""
        stop = torch.zeros_like(failed_checks, dtype=torch.bool)
        if self.patience is not None:
            stop |= failed_checks >= self.patience
        if self.min_bound is not None:
            stop |= bound * FULL_SCALE < self.min_bound
        return stop

    @staticmethod
    def rows(active: torch.Tensor, batch: int) -> torch.Tensor | slice:
        """Index of the active clips: a plain slice while every clip is active, so tensors are viewed, not copied."""
        return slice(None) if active.numel() == batch else active

    def direction(
        self, sign: torch.Tensor, moment1: torch.Tensor, moment2: torch.Tensor, rows: torch.Tensor | slice, width: int,
        step: int,
    ) -> torch.Tensor:
        """The update direction: the gradient sign, or Adam's step on it (moments kept per clip)."""
        if self.optimizer == "sign":
            return sign
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        m = moment1[rows, :width].mul_(beta1).add_(sign, alpha=1 - beta1)
        # sign * sign is 1 wherever the gradient is non-zero: the second moment needs no product.
        v = moment2[rows, :width].mul_(beta2).add_(sign.abs(), alpha=1 - beta2)
        if isinstance(rows, torch.Tensor):  # gathered copies: write them back
            moment1[rows, :width], moment2[rows, :width] = m, v
        # Steps per clip equal the global step: a clip takes part in every step until it stops.
        return (m / (1 - beta1**step)) / (v.div(1 - beta2**step).sqrt_().add_(eps))
