"""The Square Attack (Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient black-box
adversarial attack via random search", ECCV 2020), L-infinity, targeted, adapted to 1-D audio.

A score-based random search: the perturbation starts at a random sign of ``epsilon`` on every sample (the paper's
stripes, which on a 1-D clip are single samples) and stays on the vertices of the L-infinity ball. Each iteration
draws one window of contiguous samples (the paper's square) and sets it to ``+epsilon`` or ``-epsilon`` (the paper's
one value per square and channel; a window already at that value takes the other sign, as the paper redraws a
square that would not change anything). The new perturbation is kept if it lowers the targeted margin loss

    max_{j != target} log p_j - log p_target

on the victim's probabilities (a logit margin; negative exactly when the target wins), and a clip stops at its first
success. The window covers a fraction ``p`` of the clip's samples, ``p_init`` halved on the paper's schedule
(iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of 10,000, rescaled to ``max_queries``).

The attack sees the victim only through :class:`~lit_app.attacks.query.QueryOnlyView` and asks about every clip of
the batch still searching in one call per iteration. The perturbation is whole int16 units, so every clip asked
about, and the one returned, is on the 16-bit grid; samples are kept inside the int16 range, padding untouched.

Why not a library: torchattacks 3.5.1's ``Square`` is written for images (``[batch, channels, height, width]``
clipped to [0, 1], square patches), calls the model itself rather than a query-only view, draws from the global
random state (``torch.rand`` without a generator) and brings torchvision and an old requests pin (``~=2.25.1``, below
the one wandb installs here); foolbox 3.3.4 has no Square Attack.
"""

from __future__ import annotations

import torch

from lit_app.attacks.metrics import valid_mask
from lit_app.attacks.query import QueryAttack, QueryOnlyView
from lit_app.audio.pcm import FULL_SCALE, INT16_MAX, INT16_MIN

#: The paper's schedule: at iteration ``i`` of 10,000, ``p`` is ``p_init`` divided by the factor of the first bound
#: that ``i`` does not exceed (``p_init`` itself up to iteration 10).
P_SCHEDULE = ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128), (8000, 256),
              (10000, 512))


class SquareAttack(QueryAttack):
    """Targeted score-based random search inside an L-infinity ball.

    Args:
        epsilon: L-infinity bound of the perturbation, int16 units (every perturbed sample moves by exactly this,
            short of the int16 range).
        max_queries: queries per clip at most, the first (the random start) included.
        p_init: fraction of a clip's samples the first windows cover (0.05 in the paper's L-infinity attack),
            shrinking on the paper's schedule.
    """

    name = "square"

    def __init__(self, epsilon: float = 512.0, max_queries: int = 3000, p_init: float = 0.05) -> None:
        if not 1 <= epsilon <= FULL_SCALE:
            raise ValueError(f"epsilon is in int16 units between 1 and 32768, got {epsilon}")
        if not 0 < p_init <= 1:
            raise ValueError(f"p_init is a fraction of the clip, in (0, 1], got {p_init}")
        if max_queries < 1:
            raise ValueError(f"max_queries must be at least 1, got {max_queries}")
        self.epsilon = epsilon
        self.max_queries = max_queries
        self.p_init = p_init

    def window_fraction(self, iteration: int) -> float:
        """``p`` at ``iteration`` (1-based) of ``max_queries``, on the paper's schedule for 10,000 iterations."""
        scaled = int(iteration / self.max_queries * 10000)
        return self.p_init / next((factor for bound, factor in P_SCHEDULE if scaled <= bound), 512)

    def search(
        self,
        view: QueryOnlyView,
        clean: torch.Tensor,
        lengths: torch.Tensor,
        target_index: torch.Tensor,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Random search on ``clean`` through ``view`` only.

        Returns:
            The adversarial clips (the lowest loss reached, float on the 16-bit grid), queries and iterations spent
            per clip.
        """
        batch, samples = clean.shape
        device = clean.device
        x = torch.round(clean * FULL_SCALE)  # int16 units, kept as float for arithmetic
        mask = valid_mask(lengths, samples)
        # The perturbation's limits that keep every sample in the int16 range.
        low, high = (INT16_MIN - x).clamp(min=-self.epsilon), (INT16_MAX - x).clamp(max=self.epsilon)
        signs = torch.where(torch.rand(batch, samples, device=device, generator=generator) < 0.5, -1.0, 1.0)
        delta = torch.minimum(torch.maximum(signs * self.epsilon, low), high) * mask
        loss = margin_loss(view((x + delta) / FULL_SCALE), target_index)
        queries = torch.ones(batch, dtype=torch.long, device=device)
        iterations = torch.zeros_like(queries)
        positions = torch.arange(samples, device=device)
        active = (loss >= 0).nonzero().flatten()
        for iteration in range(1, self.max_queries):
            if active.numel() == 0:
                break
            length = lengths[active]
            width = (self.window_fraction(iteration) * length).round().clamp(min=1).long()
            start = (torch.rand(active.numel(), device=device, generator=generator) * (length - width + 1)).long()
            window = (positions >= start.unsqueeze(1)) & (positions < (start + width).unsqueeze(1))
            sign = torch.where(torch.rand(active.numel(), device=device, generator=generator) < 0.5, -1.0, 1.0)
            current, floor, ceiling = delta[active], low[active], high[active]
            value = torch.minimum(torch.maximum(sign.unsqueeze(1) * self.epsilon, floor), ceiling)
            unchanged = ((current == value) | ~window).all(1)
            sign = torch.where(unchanged, -sign, sign)
            value = torch.minimum(torch.maximum(sign.unsqueeze(1) * self.epsilon, floor), ceiling)
            proposal = torch.where(window, value, current)
            proposed = margin_loss(view((x[active] + proposal) / FULL_SCALE), target_index[active])
            queries[active] += 1
            iterations[active] = iteration
            better = proposed < loss[active]
            delta[active[better]], loss[active[better]] = proposal[better], proposed[better]
            active = active[loss[active] >= 0]
        return (x + delta) / FULL_SCALE, queries, iterations


def margin_loss(probabilities: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``max_{j != target} log p_j - log p_target`` per clip (``[batch]``): negative exactly when the target is the
    top class. Probabilities that underflowed to zero count as the smallest positive float."""
    log_p = probabilities.clamp_min(torch.finfo(probabilities.dtype).tiny).log()
    own = log_p.gather(1, target.unsqueeze(1)).squeeze(1)
    others = log_p.scatter(1, target.unsqueeze(1), float("-inf")).amax(1)
    return others - own
