"""HopSkipJump (Chen, Jordan & Wainwright, "HopSkipJumpAttack: A Query-Efficient Decision-Based Attack", IEEE S&P
2020), targeted, L2, against a keyword classifier that answers with its top label only.

A decision-based attack sees the victim's decision and nothing else: here, whether a clip is classified as its
target, the argmax of :class:`~lit_app.attacks.query.QueryOnlyView`'s answer (the probability values are never
read). From a starting point the victim already labels as the target, each iteration

1. projects the point onto the decision boundary by a binary search on the line to the clean clip;
2. estimates the boundary's normal there from the decisions on ``B_0 sqrt(t)`` random probes (Gaussian directions
   of radius ``delta_t = sqrt(d) theta dist_{t-1}``, with the paper's baseline subtraction);
3. steps along it by ``dist / sqrt(t)``, halved until the step lands on the target's side (geometric
   step-size search); the next binary search brings the point back to the boundary, closer to the clean clip.

The smallest adversarial point found is kept; the search spends the whole ``max_queries`` budget of each clip (short
of a last gradient estimate's worth), unless the clean clip itself is already labelled as the target.

On the 16-bit grid: every clip asked of the victim is rounded to 16-bit samples first, so the returned clip is one
the victim was asked about and labelled as the target. The binary search stops where the clips at either end of its
interval differ by half a step at most (the paper's ``theta = d^-3/2`` is far below the grid), and ``theta`` is that
interval, so the probe radius keeps the paper's ratio to the gap left between the point and the boundary (but
never falls below an RMS of one step, which rounding would erase).

Starting points (the paper starts a targeted attack from an example of the target class). None is read from the
corpus; each clip, in order:

1. with ``batch_starts``, the other clean clips handed to the same call (cut to the clip's length), nearest in L2
   first, one query each: the nearest the victim labels as the target. A clip's start can then depend on the
   other clips of its batch;
2. synthetic signals added to the clip: coloured noise (white to brown) or a chirp (50 Hz to 7 kHz), under a
   raised-cosine window over 10-100% of the clip, at levels rising from -20 to +20 dB relative to the clip's RMS;
   the first one labelled as the target.

Both together spend at most ``start_queries`` of the clip's budget. A clip without a starting point is returned
unchanged (the result says it failed; its queries are the search's).

Why not a library: foolbox 3.3.4's ``HopSkipJumpAttack`` draws its probes from the global random state (through
eagerpy, not the call's generator), never rounds to the 16-bit grid (its final boundary point, rounded, may land on
either side), clips to [0, 1], refuses the whole batch when one starting point is not adversarial, has no query
budget (a number of iterations, each of a varying cost), and brings scipy, eagerpy and GitPython. torchattacks 3.5.1
has no decision-based attack.
"""

from __future__ import annotations

import itertools
import math

import torch

from lit_app.attacks.metrics import valid_mask
from lit_app.attacks.query import QueryAttack, QueryOnlyView
from lit_app.audio.io import SAMPLE_RATE
from lit_app.audio.pcm import FULL_SCALE, INT16_MAX, INT16_MIN

#: the geometric step-size search halves the step at most this many times before giving up for an iteration
STEP_HALVINGS = 12
#: queries kept back from a gradient estimate for the step-size search and the binary search after it
RESERVE = STEP_HALVINGS + 1 + 18
#: synthetic starting-point candidates asked per call, and their levels relative to the clip's RMS, dB
SEARCH_CHUNK = 16
START_LEVELS_DB = (-20.0, 20.0)


class LabelOracle:
    """Whether the victim labels each clip as its target: the top label of the query-only view, nothing more.

    Args:
        view: the victim, seen through its query-only view.
        target: target class index of every clip of the batch.
        queries: per-clip query counters of the batch, advanced by one for every clip asked about.
        max_queries: queries per clip at most.
    """

    def __init__(self, view: QueryOnlyView, target: torch.Tensor, queries: torch.Tensor, max_queries: int) -> None:
        self.view, self.target, self.queries, self.max_queries = view, target, queries, max_queries

    def __call__(self, clips: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``clips`` (int16 units, ``[n, samples]``) asked for the batch clips ``rows`` (``[n]``, repeats allowed)."""
        self.queries.index_add_(0, rows, torch.ones_like(rows))
        return self.view(clips / FULL_SCALE).argmax(-1) == self.target[rows]

    def left(self, rows: torch.Tensor) -> torch.Tensor:
        """Queries each of the batch clips ``rows`` may still make."""
        return self.max_queries - self.queries[rows]


class HopSkipJump(QueryAttack):
    """Targeted decision-based (top label only) L2 attack.

    Args:
        max_queries: queries per clip at most, the starting-point search included; the search uses them all.
        initial_probes: probes of the first gradient estimate (``B_0``, 100 in the paper); iteration ``t`` takes
            ``B_0 sqrt(t)``.
        max_probes: probes per gradient estimate at most (bounds memory: one clip's probes are asked together).
        start_queries: queries per clip at most for finding a starting point (part of ``max_queries``).
        batch_starts: try the other clean clips of the call that the victim labels as the target before synthetic
            signals (see the module docstring).
    """

    name = "hsja"

    def __init__(
        self,
        max_queries: int = 3000,
        initial_probes: int = 100,
        max_probes: int = 1000,
        start_queries: int = 500,
        batch_starts: bool = True,
    ) -> None:
        if not 0 < start_queries < max_queries:
            raise ValueError(f"start_queries must be between 1 and max_queries - 1, got {start_queries}")
        if min(initial_probes, max_probes) < 1:
            raise ValueError("initial_probes and max_probes must be at least 1")
        self.max_queries = max_queries
        self.initial_probes = initial_probes
        self.max_probes = max_probes
        self.start_queries = start_queries
        self.batch_starts = batch_starts

    def search(
        self,
        view: QueryOnlyView,
        clean: torch.Tensor,
        lengths: torch.Tensor,
        target_index: torch.Tensor,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Attack ``clean`` through ``view``'s top labels only.

        Returns:
            The smallest adversarial clip found for each clip (the clean clip where no starting point was found;
            float, on the 16-bit grid), queries and iterations spent per clip.
        """
        batch, samples = clean.shape
        x = torch.round(clean * FULL_SCALE)  # int16 units, kept as float for arithmetic
        mask = valid_mask(lengths, samples).float()
        queries = torch.zeros(batch, dtype=torch.long, device=clean.device)
        iterations = torch.zeros_like(queries)
        ask = LabelOracle(view, target_index, queries, self.max_queries)
        start, found = self.starting_points(ask, x, mask, lengths, generator)
        best = x.clone()
        rows = found.nonzero().flatten()
        if rows.numel() == 0:
            return best / FULL_SCALE, queries, iterations
        x, mask, dims = x[rows], mask[rows], lengths[rows].float()
        point, theta = self.to_boundary(ask, x, start[rows], rows, dims)
        best[rows] = point
        best_distance = (point - x).norm(dim=1)
        active = torch.arange(rows.numel(), device=clean.device)
        for step in itertools.count(1):
            # A clip goes on while it can afford a gradient estimate and has a perturbation left to shrink.
            probes = ask.left(rows[active]) - RESERVE
            going = (probes >= 1) & (best_distance[active] > 0)
            active, probes = active[going], probes[going]
            if active.numel() == 0:
                break
            probes = probes.clamp(max=min(int(self.initial_probes * math.sqrt(step)), self.max_probes))
            here, there = point[active], x[active]
            distance = (here - there).norm(dim=1)
            radius = torch.maximum(dims[active].sqrt() * theta[active] * distance, dims[active].sqrt())
            direction = torch.stack([
                self.boundary_normal(ask, here[i], rows[a], int(probes[i]), float(radius[i]), int(dims[a]), generator)
                for i, a in enumerate(active.tolist())
            ])
            stepped, moved = self.geometric_step(ask, here, direction * mask[active], distance / math.sqrt(step),
                                                 rows[active], mask[active])
            moved_rows = active[moved]
            if moved_rows.numel():
                point[moved_rows], theta[moved_rows] = self.to_boundary(ask, x[moved_rows], stepped[moved],
                                                                        rows[moved_rows], dims[moved_rows])
                closer = (point[moved_rows] - x[moved_rows]).norm(dim=1)
                better = closer < best_distance[moved_rows]
                best[rows[moved_rows[better]]] = point[moved_rows[better]]
                best_distance[moved_rows[better]] = closer[better]
            iterations[rows[active]] = step
        return best / FULL_SCALE, queries, iterations

    def starting_points(
        self, ask: LabelOracle, x: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A clip labelled as the target for each clip (int16 units) and whether one was found (module docstring)."""
        batch, samples = x.shape
        device = x.device
        start, found = x.clone(), torch.zeros(batch, dtype=torch.bool, device=device)
        for i in range(batch):
            row, length, budget = torch.tensor([i], device=device), int(lengths[i]), self.start_queries
            if self.batch_starts and batch > 1:
                donors = torch.unique(x * mask[i], dim=0)
                distance = (donors - x[i]).norm(dim=1)
                donors, distance = donors[distance > 0], distance[distance > 0]
                donors = donors[distance.argsort(stable=True)][:budget]
                if donors.shape[0]:
                    hits = ask(donors, row.expand(donors.shape[0]))
                    budget -= donors.shape[0]
                    if bool(hits.any()):
                        start[i], found[i] = donors[int(hits.nonzero()[0])], True
                        continue
            rms = x[i, :length].pow(2).mean().sqrt().clamp(min=1.0)
            low, high = START_LEVELS_DB
            levels = torch.linspace(low, high, max(budget, 1), device=device)
            for first in range(0, budget, SEARCH_CHUNK):
                gain = rms * 10 ** (levels[first : first + SEARCH_CHUNK] / 20)
                signals = synthetic_signals(gain.numel(), length, generator, device)
                candidates = torch.zeros(gain.numel(), samples, device=device)
                candidates[:, :length] = torch.round(x[i, :length] + gain.unsqueeze(1) * signals).clamp(INT16_MIN,
                                                                                                        INT16_MAX)
                hits = ask(candidates, row.expand(gain.numel()))
                if bool(hits.any()):
                    start[i], found[i] = candidates[int(hits.nonzero()[0])], True
                    break
        return start, found

    def to_boundary(
        self, ask: LabelOracle, x: torch.Tensor, far: torch.Tensor, rows: torch.Tensor, dims: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Binary search on the line from each clean clip ``x`` to its adversarial ``far``: the blend nearest ``x``
        that was asked and labelled as the target, and ``theta``, the fraction of the line left undecided.

        The search stops at the paper's ``theta = d^-3/2`` or where the blends at both ends differ by half a 16-bit
        step at most, or when the clip's queries run out.
        """
        span = (far - x).abs().amax(1).clamp(min=1.0)
        theta = torch.maximum(0.5 / span, dims.pow(-1.5))
        low, high = torch.zeros_like(span), torch.ones_like(span)
        while True:
            open_ = ((high - low) > theta) & (ask.left(rows) >= 1)
            if not bool(open_.any()):
                break
            i = open_.nonzero().flatten()
            middle = (low[i] + high[i]) / 2
            hit = ask(blend(x[i], far[i], middle), rows[i])
            high[i], low[i] = torch.where(hit, middle, high[i]), torch.where(hit, low[i], middle)
        return blend(x, far, high), high - low

    def boundary_normal(
        self,
        ask: LabelOracle,
        point: torch.Tensor,
        row: torch.Tensor,
        probes: int,
        radius: float,
        length: int,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """The paper's Monte Carlo estimate of the boundary's normal at ``point`` (towards the target), unit L2."""
        noise = torch.randn(probes, length, device=point.device, generator=generator)
        noise = noise / noise.norm(dim=1, keepdim=True).clamp(min=1e-12)
        asked = torch.zeros(probes, point.numel(), device=point.device)
        asked[:, :length] = torch.round(point[:length] + radius * noise).clamp(INT16_MIN, INT16_MAX)
        sign = torch.where(ask(asked, row.expand(probes)), 1.0, -1.0)
        # The directions actually probed (after rounding and clipping), as the paper's code uses.
        directions = (asked - point) / radius
        mean = sign.mean()
        weights = sign if bool(mean.abs() == 1) else sign - mean  # baseline subtraction, unless all agree
        normal = (weights.unsqueeze(1) * directions).mean(0)
        return normal / normal.norm().clamp(min=1e-12)

    def geometric_step(
        self,
        ask: LabelOracle,
        point: torch.Tensor,
        direction: torch.Tensor,
        size: torch.Tensor,
        rows: torch.Tensor,
        mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``point + size * direction``, ``size`` halved until the victim labels it as the target; returns the
        clips stepped to and which clips found such a step."""
        stepped, moved = point.clone(), torch.zeros(point.shape[0], dtype=torch.bool, device=point.device)
        size = size.clone()
        searching = torch.arange(point.shape[0], device=point.device)
        for _ in range(STEP_HALVINGS + 1):
            searching = searching[ask.left(rows[searching]) >= 1]
            if searching.numel() == 0:
                break
            proposal = torch.round(point[searching] + size[searching, None] * direction[searching])
            proposal = proposal.clamp(INT16_MIN, INT16_MAX) * mask[searching]
            hit = ask(proposal, rows[searching])
            stepped[searching[hit]], moved[searching[hit]] = proposal[hit], True
            size[searching[~hit]] /= 2
            searching = searching[~hit]
        return stepped, moved


def blend(x: torch.Tensor, far: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``x + alpha (far - x)`` per clip, rounded to the 16-bit grid (int16 units)."""
    return torch.round(x + alpha.unsqueeze(1) * (far - x))


def synthetic_signals(count: int, length: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """``[count, length]`` signals of unit RMS to search starting points with: coloured noise (spectral slope from
    white to brown) or a linear chirp between two frequencies from 50 Hz to 7 kHz, each under a raised-cosine window
    over a random 10-100% of the clip."""
    t = torch.arange(length, device=device) / SAMPLE_RATE
    duration = length / SAMPLE_RATE
    draw = torch.rand(count, 7, device=device, generator=generator)
    white = torch.randn(count, length, device=device, generator=generator)
    frequencies = torch.fft.rfftfreq(length, 1 / SAMPLE_RATE, device=device).clamp(min=20.0)
    slope = draw[:, :1] * 2  # power falls as f^-slope: 0 white, 1 pink, 2 brown
    noise = torch.fft.irfft(torch.fft.rfft(white) * frequencies.pow(-slope / 2), n=length)
    first, last = 50 * 140 ** draw[:, 1:2], 50 * 140 ** draw[:, 2:3]
    chirp = torch.sin(2 * math.pi * (first * t + (last - first) * t.pow(2) / (2 * duration)))
    signals = torch.where(draw[:, 3:4] < 0.5, noise, chirp)
    begin, width = draw[:, 4:5] * 0.8, 0.1 + draw[:, 5:6] * 0.9
    window = torch.sin(math.pi * ((t / duration - begin) / width).clamp(0, 1)).pow(2)
    signals = signals * window
    return signals / signals.pow(2).mean(1, keepdim=True).sqrt().clamp(min=1e-12)
