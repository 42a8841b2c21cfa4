"""Decoupled Direction and Norm (Rony, Hafemann, Oliveira, Ben Ayed, Sabourin & Granger, "Decoupling Direction and
Norm for Efficient Gradient-Based L2 Adversarial Attacks and Defenses", CVPR 2019), targeted, on a classifier.

A white-box attack that looks for the smallest L2 perturbation. The perturbation's direction and its norm are
updated separately: each step moves the perturbation by ``alpha`` along the normalised gradient of the
cross-entropy toward the target, then rescales it to a norm ``epsilon`` that shrinks by ``1 - gamma`` while the
current clip is classified as the target and grows by ``1 + gamma`` while it is not. ``alpha`` decays from
``step_size`` to 1% of it by cosine annealing, as the authors' code does. After each step the clip is rounded to the
16-bit grid (the paper's quantisation step, there to 8-bit pixels), so the forward pass of the next step judges
exactly the clip that would be written; the smallest perturbation judged adversarial is returned. All ``steps`` are
run (one query each: the forward pass gives both the gradient and the judgement).

The result is a quiet perturbation spread over the clip, its energy where the victim is most sensitive: a different
signature from the L-infinity attacks (PGD, C&W's bound, the Square Attack), which push most samples to their bound,
and from the genetic attack's sparse broadband noise. A clip that never reaches its target returns its last state.

Norms are in int16 units over the clip's samples: a norm ``N`` over ``n`` samples is an RMS of ``N / sqrt(n)`` (over
16,000 samples, 1,000 is an RMS of 7.9).

Why not a library: foolbox 3.3.4's ``DDNAttack`` does not round to the grid (a minimal perturbation, rounded
afterwards, may no longer fool the victim) and would bring scipy, eagerpy and GitPython for one short loop;
torchattacks 3.5.1 has no DDN.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from lit_app.attacks.base import Attack, AttackBatch
from lit_app.attacks.victims import ClassifierVictim, Victim
from lit_app.audio.pcm import FULL_SCALE, INT16_MAX, INT16_MIN


class DDN(Attack):
    """Targeted white-box L2 attack: decoupled direction and norm.

    Args:
        steps: gradient steps, all of them run (one query each).
        gamma: factor by which the norm changes each step: times ``1 - gamma`` while the clip is classified as the
            target, ``1 + gamma`` while not (0.05).
        initial_norm: L2 norm of the first perturbation, int16 units (see the module docstring).
        step_size: L2 length of the first gradient step, int16 units; it decays to 1% of this by cosine annealing
            (the paper starts step and norm equal, at 1 on [0, 1] pixels).
    """

    name = "ddn"

    def __init__(
        self, steps: int = 100, gamma: float = 0.05, initial_norm: float = 1000.0, step_size: float = 1000.0
    ) -> None:
        if not 0 < gamma < 1:
            raise ValueError(f"gamma must be between 0 and 1, got {gamma}")
        if min(initial_norm, step_size) <= 0 or steps < 1:
            raise ValueError("steps, initial_norm and step_size must be positive")
        self.steps = steps
        self.gamma = gamma
        self.initial_norm = initial_norm
        self.step_size = step_size

    def step_length(self, step: int) -> float:
        """``alpha`` at ``step`` (0-based): cosine annealing from ``step_size`` to 1% of it (PyTorch's
        ``CosineAnnealingLR`` with ``eta_min`` 0.01 times the first step, as the authors' code)."""
        return self.step_size * (0.01 + 0.99 * (1 + math.cos(math.pi * step / self.steps)) / 2)

    def run(self, victim: Victim, batch: AttackBatch, **conditions: Any) -> torch.Tensor:
        if not isinstance(victim, ClassifierVictim):
            raise TypeError("DDN needs a classifier victim (logits to judge every step by)")
        rows = batch.feasible_rows()
        x = torch.round(batch.clean[rows] * FULL_SCALE)  # int16 units, kept as float for arithmetic
        mask, target = batch.mask[rows], batch.encoded[0][rows]
        size, device = rows.numel(), x.device
        delta = torch.zeros_like(x)
        norm = torch.full((size,), float(self.initial_norm), device=device)
        largest = (torch.maximum(x - INT16_MIN, INT16_MAX - x) * mask).norm(dim=1)  # the farthest clip in range
        best, best_norm = torch.zeros_like(x), torch.full((size,), math.inf, device=device)
        for step in range(self.steps):
            d = delta.clone().requires_grad_()
            logits = victim.logits((x + d) / FULL_SCALE)
            (gradient,) = torch.autograd.grad(F.cross_entropy(logits, target, reduction="sum"), d)
            with torch.no_grad():
                adversarial = logits.argmax(-1) == target
                current = delta.norm(dim=1)
                smaller = adversarial & (current < best_norm)
                best[smaller], best_norm[smaller] = delta[smaller], current[smaller]
                gradient = gradient * mask
                flat = gradient.norm(dim=1) == 0  # no direction to follow: a random one, as the authors' code
                if bool(flat.any()):
                    gradient[flat] = torch.randn(gradient[flat].shape, device=device, generator=batch.generator)
                    gradient[flat] *= mask[flat]
                moved = delta - self.step_length(step) * gradient / gradient.norm(dim=1, keepdim=True)
                norm = torch.where(adversarial, norm * (1 - self.gamma), norm * (1 + self.gamma)).minimum(largest)
                moved = moved * (norm / moved.norm(dim=1).clamp(min=1e-12)).unsqueeze(1)
                delta = (torch.round(x + moved).clamp(INT16_MIN, INT16_MAX) - x) * mask
        batch.queries[rows] += self.steps
        batch.iterations[rows] = self.steps
        found = best_norm.isfinite().unsqueeze(1)
        adversarial_clips = batch.clean.clone()
        adversarial_clips[rows] = (x + torch.where(found, best, delta)) / FULL_SCALE
        return adversarial_clips
