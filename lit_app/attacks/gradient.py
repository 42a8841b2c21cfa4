"""Projected gradient descent (Madry et al.) and the fast gradient sign method (Goodfellow et al.), targeted.

PGD and FGSM take signed-gradient steps that lower the victim's loss toward the target inside a fixed L-infinity
ball of radius ``epsilon`` (int16 units). FGSM is a single step of size ``epsilon``; PGD takes many smaller
steps from a random start and stops a clip once its rounded 16-bit version reaches the target. PGDL2 steps along
the normalised gradient inside an L2 ball and runs every step, as attack libraries do.
"""

from __future__ import annotations

from typing import Any

import torch

from lit_app.attacks.base import Attack, AttackBatch
from lit_app.attacks.victims import Victim, select
from lit_app.audio.pcm import FULL_SCALE, quantize


class PGD(Attack):
    """Targeted L-infinity projected gradient descent.

    Args:
        epsilon: radius of the perturbation, int16 units.
        step_size: size of each signed step, int16 units.
        iterations: steps at most.
        random_start: start from uniform noise inside the ball (otherwise from the clean clip).
        check_every: steps between success checks on the rounded clip; a successful clip stops.
    """

    name = "pgd"

    def __init__(
        self,
        epsilon: float = 256.0,
        step_size: float = 32.0,
        iterations: int = 50,
        random_start: bool = True,
        check_every: int = 5,
    ) -> None:
        self.epsilon = epsilon
        self.step_size = step_size
        self.iterations = iterations
        self.random_start = random_start
        self.check_every = check_every

    def run(self, victim: Victim, batch: AttackBatch, **conditions: Any) -> torch.Tensor:
        clean, lengths, mask, targets = batch.clean, batch.lengths, batch.mask, batch.targets
        eps, step_size = self.epsilon / FULL_SCALE, self.step_size / FULL_SCALE
        delta = torch.zeros_like(clean)
        if self.random_start:
            delta = (torch.rand(clean.shape, device=clean.device, generator=batch.generator) * 2 - 1) * eps * mask
        adversarial = quantize((clean + delta).clamp(-1.0, 1.0)) * mask
        active = batch.feasible_rows()
        for step in range(1, self.iterations + 1):
            if active.numel() == 0:
                break
            x, m, d = clean[active], mask[active], delta[active].requires_grad_()
            loss = victim.loss((x + d).clamp(-1.0, 1.0), lengths[active], select(batch.encoded, active))
            (gradient,) = torch.autograd.grad(loss.sum(), d)
            with torch.no_grad():
                d = (d - step_size * gradient.sign()).clamp(-eps, eps) * m
                delta[active] = d
                adversarial[active] = quantize((x + d).clamp(-1.0, 1.0)) * m
            batch.queries[active] += 1
            batch.iterations[active] = step
            if self.check_every and step % self.check_every == 0 and step < self.iterations:
                with torch.no_grad():
                    predictions = victim.predict(adversarial[active], lengths[active])
                batch.queries[active] += 1
                hit = torch.tensor([p == targets[i] for p, i in zip(predictions, active.tolist())], device=clean.device)
                active = active[~hit]
        return adversarial


class FGSM(PGD):
    """Targeted fast gradient sign method: one signed step of size ``epsilon`` (int16 units).

    Args:
        epsilon: size of the step and radius of the perturbation, int16 units.
    """

    name = "fgsm"

    def __init__(self, epsilon: float = 256.0) -> None:
        super().__init__(epsilon=epsilon, step_size=epsilon, iterations=1, random_start=False, check_every=0)


class PGDL2(Attack):
    """Targeted L2 projected gradient descent, as torchattacks' ``PGDL2``: a random start inside the L2 ball, steps
    of fixed L2 length along the normalised gradient, projection back onto the ball, and every step run (no success
    check, so an example goes on past the victim's boundary). A quiet attack of another norm than the app's PGD.

    Norms are in int16 units over the clip's samples: a norm ``N`` over ``n`` samples is an RMS of ``N / sqrt(n)``
    (over 16,000 samples, 2,500 is an RMS of 19.8, 30 dB below a keyword clip of median loudness).

    Args:
        epsilon: radius of the L2 ball, int16 units.
        step_size: L2 length of each step, int16 units (torchattacks' default is a fifth of the radius).
        iterations: steps, all of them run.
        random_start: start from a random point inside the ball (otherwise from the clean clip).
    """

    name = "pgd_l2"

    def __init__(
        self, epsilon: float = 2500.0, step_size: float = 500.0, iterations: int = 10, random_start: bool = True
    ) -> None:
        if min(epsilon, step_size) <= 0 or iterations < 1:
            raise ValueError("epsilon, step_size and iterations must be positive")
        self.epsilon = epsilon
        self.step_size = step_size
        self.iterations = iterations
        self.random_start = random_start

    def run(self, victim: Victim, batch: AttackBatch, **conditions: Any) -> torch.Tensor:
        rows = batch.feasible_rows()
        x, mask, lengths = batch.clean[rows], batch.mask[rows], batch.lengths[rows]
        eps, step_size = self.epsilon / FULL_SCALE, self.step_size / FULL_SCALE
        delta = torch.zeros_like(x)
        if self.random_start:
            direction = torch.randn(x.shape, device=x.device, generator=batch.generator) * mask
            radius = torch.rand((x.shape[0], 1), device=x.device, generator=batch.generator) * eps
            delta = direction / row_norms(direction) * radius
        for _ in range(self.iterations):
            d = delta.requires_grad_()
            loss = victim.loss((x + d).clamp(-1.0, 1.0), lengths, select(batch.encoded, rows))
            (gradient,) = torch.autograd.grad(loss.sum(), d)
            with torch.no_grad():
                gradient = gradient * mask
                delta = delta - step_size * gradient / row_norms(gradient)
                delta = delta * (eps / row_norms(delta)).clamp(max=1.0)
                delta = ((x + delta).clamp(-1.0, 1.0) - x) * mask
        batch.queries[rows] += self.iterations
        batch.iterations[rows] = self.iterations
        adversarial = batch.clean.clone()
        adversarial[rows] = quantize((x + delta).clamp(-1.0, 1.0)) * mask
        return adversarial


def row_norms(rows: torch.Tensor) -> torch.Tensor:
    """Each row's L2 norm as a column, kept away from zero (a clip with no gradient stays where it is)."""
    return rows.norm(dim=1, keepdim=True).clamp(min=1e-12)
