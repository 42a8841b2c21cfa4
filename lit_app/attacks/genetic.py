"""Alzantot et al.'s gradient-free genetic attack ("Did you hear that?", 2018) on a keyword classifier.

For each clip a population of perturbed copies evolves: the fittest members (highest target-class
probability) survive unchanged, the others are replaced by children of two parents drawn with probability
``softmax(fitness / temperature)``, mixed by uniform crossover and then mutated: each sample changes with a
small probability by bounded uniform noise. The search stops for a clip at the first generation whose best
member (highest target probability) is classified as the target, as the released code checks, or after
``max_generations``; ``stop="any_member"`` (the rule of the first corpora) stops as soon as any member is. The elites' answers are kept rather than
asked again (the released code re-queries them), so a generation costs ``population_size - elite_size``
queries after the first: 3,602 at most with the paper's settings instead of 4,000.

Unlike the released code, the noise is bounded explicitly: each mutation adds at most ``mutation_bound``
and the total perturbation never exceeds ``noise_bound`` (both in int16 units), so the reported distortion
is the one intended. The attack sees the victim only through :class:`~lit_app.attacks.query.QueryOnlyView`,
and the whole population of every clip in the batch is judged in one batched call (which the victim answers in
cache-sized passes on the CPU: :func:`~lit_app.attacks.victims.answer_in_passes`).

Against a confident victim the paper's parent selection loses its pressure: while every member gives the target
a probability far below the temperature (0.01), ``softmax(fitness / 0.01)`` is nearly uniform, so parents are
drawn almost at random and only the elites carry progress. ``fitness="log_probability"`` selects on the
logarithm instead: with temperature 1 a member is drawn in proportion to its target probability, so a member ten
times fitter is ten times likelier to breed however small both are. The elites and the best member are the same
under either choice (the logarithm keeps the order).

On a GPU the generation's own work (selection, crossover, mutation: dozens of small kernels) costs the CPU
more time to launch than the GPU needs to run it, so the loop must not wait for the GPU while it launches
them. With ``queue_ahead`` (the default on CUDA) a generation asks the GPU for one answer only, which clips
are done, after it has queued the next generation for every clip, and it draws a fixed number of mutation
positions per member instead of asking for the largest count; the CPU then launches the next generation while
the victim's forward pass runs. It changes which random numbers are drawn, not the search: on the CPU, where
waiting costs nothing, the default keeps the draws of the published corpora.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from lit_app.attacks.query import QueryAttack, QueryOnlyView
from lit_app.audio.pcm import FULL_SCALE


class GeneticAttack(QueryAttack):
    """Targeted black-box genetic attack.

    Args:
        population_size: members per clip (20 in the paper).
        elite_size: fittest members copied unchanged into the next generation (2).
        max_generations: generations at most (200: 20 + 199 x 18 = 3,602 queries with 20 members, 2 elites).
        temperature: softmax temperature of parent selection (0.01 over probabilities in the paper; 1 over
            log-probabilities draws parents in proportion to their target probability).
        mutation_probability: chance that a sample of a child mutates (0.0005).
        mutation_bound: largest change a single mutation makes, int16 units.
        noise_bound: largest total change of any sample (L-infinity bound of the perturbation), int16 units.
        max_batch_clips: clips per call of the victim (bounds memory; the population of many clips is evaluated
            together; 1024 already saturates an H100 on the keyword spotter).
        queue_ahead: one host sync per generation, after the next generation is queued (see the module
            docstring); ``None``: on CUDA devices only.
        fitness: what parents are selected on: the target probability (the paper) or its logarithm, which
            keeps selecting against confident victims (see the module docstring).
        stop: when a clip is done: its best member is classified as the target (``best_member``, the released
            code), or any member is (``any_member``, which returns the fittest such member; it stops earlier
            where the fittest member still loses to another class).
    """

    name = "genetic"
    # Both came after the first corpora. Left to the device, ``queue_ahead`` is not recorded, as the device's random
    # stream is not; the paper's fitness is what those corpora used.
    # ``stop`` came later still; "any_member" is the rule those corpora were built with.
    recorded_unless = {"queue_ahead": None, "fitness": "probability", "stop": "any_member"}

    def __init__(
        self,
        population_size: int = 20,
        elite_size: int = 2,
        max_generations: int = 200,
        temperature: float = 0.01,
        mutation_probability: float = 0.0005,
        mutation_bound: int = 2048,
        noise_bound: int = 2048,
        max_batch_clips: int = 1024,
        queue_ahead: bool | None = None,
        fitness: Literal["probability", "log_probability"] = "probability",
        stop: Literal["best_member", "any_member"] = "best_member",
    ) -> None:
        if not 0 < elite_size < population_size:
            raise ValueError(f"elite_size must be between 1 and population_size - 1, got {elite_size}")
        if min(mutation_bound, noise_bound) < 1 or max(mutation_bound, noise_bound) > FULL_SCALE:
            raise ValueError("mutation_bound and noise_bound are int16 units between 1 and 32768")
        if fitness not in ("probability", "log_probability"):
            raise ValueError(f"fitness must be 'probability' or 'log_probability', got {fitness!r}")
        if stop not in ("best_member", "any_member"):
            raise ValueError(f"stop must be 'best_member' or 'any_member', got {stop!r}")
        self.population_size = population_size
        self.elite_size = elite_size
        self.max_generations = max_generations
        self.temperature = temperature
        self.mutation_probability = mutation_probability
        self.mutation_bound = mutation_bound
        self.noise_bound = noise_bound
        self.max_batch_clips = max_batch_clips
        self.queue_ahead = queue_ahead
        self.fitness = fitness
        self.stop = stop

    def search(
        self,
        view: QueryOnlyView,
        clean: torch.Tensor,
        lengths: torch.Tensor,
        target_index: torch.Tensor,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Evolve perturbations of ``clean`` through ``view`` only.

        Returns:
            The best member of each clip (float on the 16-bit grid), queries and generations spent per clip.
        """
        batch, samples = clean.shape
        device = clean.device
        members = self.population_size
        queue_ahead = device.type == "cuda" if self.queue_ahead is None else self.queue_ahead
        draws = self.mutation_draws(int(lengths.max())) if queue_ahead else None
        x = torch.round(clean * FULL_SCALE)  # int16 units, kept as float for arithmetic
        queries = torch.zeros(batch, dtype=torch.long, device=device)
        generations = torch.zeros(batch, dtype=torch.long, device=device)
        best = torch.zeros(batch, samples, device=device)
        active = torch.arange(batch, device=device)
        buffers = PopulationBuffers(batch, members, members - self.elite_size, samples, device)
        delta = self.mutate(buffers.population(batch).zero_(), x, lengths, generator, draws=draws)
        elite_probabilities = None  # the elites are unchanged copies: their answers are already known
        for generation in range(self.max_generations):
            xa = x[active]
            probabilities = self.evaluate(view, xa, delta, elite_probabilities, buffers)  # [active, members, classes]
            queries[active] += members if elite_probabilities is None else members - self.elite_size
            generations[active] += 1
            rows = torch.arange(active.numel(), device=device)
            fitness = probabilities[rows, :, target_index[active]]  # [active, members]
            choice, done = self.stop_rule(probabilities, fitness, target_index[active])
            best[active] = xa + delta[rows, choice]
            running = ~done
            if generation == self.max_generations - 1:
                break
            if queue_ahead:
                delta, elite_probabilities = self.breed(delta, fitness, probabilities, xa, lengths[active], generator,
                                                        buffers, draws)
                still = running.nonzero().squeeze(1)  # the generation's one host sync
                if still.numel() == 0:
                    break
                if still.numel() < active.numel():
                    active, delta, elite_probabilities = active[still], buffers.keep(delta, still), elite_probabilities[still]
                continue
            if not bool(running.any()):
                break
            if not bool(running.all()):
                still = running.nonzero().squeeze(1)
                active, delta, fitness, xa = active[still], buffers.keep(delta, still), fitness[still], xa[still]
                probabilities = probabilities[still]
            delta, elite_probabilities = self.breed(delta, fitness, probabilities, xa, lengths[active], generator,
                                                    buffers)
        return best / FULL_SCALE, queries, generations

    def stop_rule(
        self, probabilities: torch.Tensor, fitness: torch.Tensor, target_index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The member each clip returns and whether the clip is done (``[clips]`` each), from the members'
        ``[clips, members, classes]`` probabilities and ``[clips, members]`` target probabilities."""
        fittest = fitness.argmax(1)
        if self.stop == "best_member":
            rows = torch.arange(fitness.shape[0], device=fitness.device)
            return fittest, probabilities[rows, fittest].argmax(-1) == target_index
        reached = probabilities.argmax(-1) == target_index.unsqueeze(1)
        # The fittest member classified as the target if there is one, else the fittest member.
        done = reached.any(1)
        return torch.where(done, fitness.masked_fill(~reached, -1.0).argmax(1), fittest), done

    def breed(
        self,
        delta: torch.Tensor,
        fitness: torch.Tensor,
        probabilities: torch.Tensor,
        x: torch.Tensor,
        lengths: torch.Tensor,
        generator: torch.Generator,
        buffers: PopulationBuffers,
        draws: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The next generation, and the answers already known for its elites (``[clips, elite_size, classes]``)."""
        elites = fitness.topk(self.elite_size, dim=1).indices
        elite_probabilities = probabilities.take_along_dim(elites.unsqueeze(-1), dim=1)
        population = self.next_generation(delta, fitness, elites, x, lengths, generator, buffers, draws)
        return population, elite_probabilities

    def mutation_draws(self, samples: int) -> int:
        """Mutation positions drawn per member when their number is fixed in advance: the binomial mean of
        ``samples`` trials plus eight standard deviations and eight, which a member's count exceeds with
        probability below 1e-14 (it would then mutate that many samples only)."""
        mean = samples * self.mutation_probability
        return max(1, math.ceil(mean + 8 * math.sqrt(mean * (1 - self.mutation_probability)) + 8))

    def evaluate(
        self,
        view: QueryOnlyView,
        x: torch.Tensor,
        delta: torch.Tensor,
        elite_probabilities: torch.Tensor | None,
        buffers: PopulationBuffers,
    ) -> torch.Tensor:
        """Class probabilities of every member of every clip, in as few forward passes as memory allows.

        With ``elite_probabilities`` (``[clips, elite_size, classes]``, the answers for the first members,
        which are unchanged copies of the last generation's elites) only the children are queried: the
        victim is deterministic, so asking again would spend queries to learn nothing.
        """
        first = 0 if elite_probabilities is None else self.elite_size
        clips, members, samples = delta.shape
        flat = torch.add(x.unsqueeze(1), delta[:, first:], out=buffers.queried(clips, members - first)).div_(FULL_SCALE)
        flat = flat.view(clips * (members - first), samples)
        answers = [view(flat[i : i + self.max_batch_clips]) for i in range(0, flat.shape[0], self.max_batch_clips)]
        probabilities = torch.cat(answers).reshape(clips, members - first, -1)
        return probabilities if elite_probabilities is None else torch.cat([elite_probabilities, probabilities], 1)

    def parent_weights(self, fitness: torch.Tensor) -> torch.Tensor:
        """Each member's chance to be drawn as a parent, from its target probability (``[clips, members]``)."""
        if self.fitness == "log_probability":
            # A probability that underflowed to zero stays selectable (barely) instead of becoming -inf.
            fitness = fitness.clamp_min(torch.finfo(fitness.dtype).tiny).log()
        return torch.softmax(fitness / self.temperature, dim=1)

    def next_generation(
        self,
        delta: torch.Tensor,
        fitness: torch.Tensor,
        elites: torch.Tensor,
        x: torch.Tensor,
        lengths: torch.Tensor,
        generator: torch.Generator,
        buffers: PopulationBuffers,
        draws: int | None = None,
    ) -> torch.Tensor:
        """The ``elites`` (member indices, fittest first), then children of softmax-selected parents by
        uniform crossover and mutation, written into ``buffers``' next population (``delta`` is not touched)."""
        clips, members, samples = delta.shape
        children = members - self.elite_size
        rows = torch.arange(clips, device=delta.device).unsqueeze(1)
        population = buffers.next_population(clips)
        population[:, : self.elite_size] = delta[rows, elites]
        parents = torch.multinomial(self.parent_weights(fitness), 2 * children, replacement=True, generator=generator)
        take_first = random_bits((clips, children, samples), delta.device, generator)
        # Member ``p`` of clip ``c`` is row ``c * members + p`` of the flattened population.
        rows_of_parents = parents + rows * members
        flat = delta.reshape(clips * members, samples)
        first, second = buffers.parents(clips)
        torch.index_select(flat, 0, rows_of_parents[:, :children].reshape(-1), out=first)
        torch.index_select(flat, 0, rows_of_parents[:, children:].reshape(-1), out=second)
        torch.where(take_first, first.view(clips, children, samples), second.view(clips, children, samples),
                    out=population[:, self.elite_size :])
        return self.mutate(population, x, lengths, generator, first=self.elite_size, draws=draws)

    def mutate(
        self,
        delta: torch.Tensor,
        x: torch.Tensor,
        lengths: torch.Tensor,
        generator: torch.Generator,
        first: int = 0,
        draws: int | None = None,
    ) -> torch.Tensor:
        """Add bounded uniform noise to each valid sample of members ``first:`` with probability
        ``mutation_probability``, in place.

        Drawing how many samples mutate (binomial) and then where, instead of one coin per sample, costs a few
        numbers per member; two draws on the same sample add up. Members are within bounds before, so only
        the mutated samples need clamping again. ``draws`` fixes the positions drawn per member (see
        :meth:`mutation_draws`); otherwise as many as the largest count, which the host must wait for.
        """
        clips, members, samples = delta.shape
        device = delta.device
        members -= first
        valid = lengths.to(device).float().view(clips, 1).expand(clips, members)
        counts = torch.binomial(valid, torch.full_like(valid, self.mutation_probability), generator=generator).long()
        most = draws if draws is not None else (int(counts.max()) if counts.numel() else 0)
        if most == 0:
            return delta
        positions = (torch.rand(clips, members, most, device=device, generator=generator) * valid.unsqueeze(-1)).long()
        noise = torch.randint(-self.mutation_bound, self.mutation_bound + 1, (clips, members, most), device=device,
                              generator=generator).float()
        noise = noise * (torch.arange(most, device=device) < counts.unsqueeze(-1))
        mutable = delta[:, first:]
        mutable.scatter_add_(2, positions, noise)
        # Clamp the touched samples: to the noise bound, and so that the sample stays inside the int16 range.
        base = x.gather(1, positions.reshape(clips, -1)).reshape(positions.shape)
        touched = mutable.gather(2, positions).clamp(-self.noise_bound, self.noise_bound)
        touched = (base + touched).clamp(-FULL_SCALE, FULL_SCALE - 1) - base
        mutable.scatter_(2, positions, touched)
        return delta


class PopulationBuffers:
    """The population-sized tensors of one search, allocated once and reused by every generation.

    A fresh CPU tensor this large (1.3 MB per clip with 20 members) is mapped from new memory pages, which the
    kernel zeroes on first touch; doing that for each of a generation's four such tensors cost more than the
    crossover itself (docs/notebook.md, "The genetic loop's own work on the CPU"). The population lives in one of
    two buffers; the next generation, or the clips still searching, are written into the other.

    Args:
        clips: clips in the search (the largest number active at once).
        members: population size per clip.
        children: members bred per generation.
        samples: samples per clip.
        device: where the search runs.
    """

    def __init__(self, clips: int, members: int, children: int, samples: int, device: torch.device) -> None:
        self.children = children
        self._current, self._spare = (torch.empty(clips, members, samples, device=device) for _ in range(2))
        self._parents = torch.empty(2, clips * children, samples, device=device)
        self._queried = torch.empty(clips * members, samples, device=device)

    def population(self, clips: int) -> torch.Tensor:
        """The current population's buffer, for ``clips`` clips: ``[clips, members, samples]``."""
        return self._current[:clips]

    def next_population(self, clips: int) -> torch.Tensor:
        """The buffer the next population is written into; from now on the current one. It never holds the
        population it is made from, which stays readable until then."""
        self._current, self._spare = self._spare, self._current
        return self._current[:clips]

    def keep(self, population: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``population[index]``: the members of the clips still searching, in the next buffer."""
        return torch.index_select(population, 0, index, out=self.next_population(index.numel()))

    def parents(self, clips: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first and second parents of every child, ``[clips * children, samples]`` each."""
        rows = clips * self.children
        return self._parents[0, :rows], self._parents[1, :rows]

    def queried(self, clips: int, members: int) -> torch.Tensor:
        """The waveforms asked of the victim in one generation, ``[clips, members, samples]``."""
        return self._queried[: clips * members].view(clips, members, -1)


def random_bits(shape: tuple[int, int, int], device: torch.device, generator: torch.Generator) -> torch.Tensor:
    """Fair coin flips as a bool tensor, drawn 8 per random byte (the crossover mask is the attack's largest
    random draw: one coin per sample of every child)."""
    *lead, last = shape
    packed = torch.randint(0, 256, (*lead, (last + 7) // 8), device=device, dtype=torch.uint8, generator=generator)
    # Bit masks made on the device: a tensor built from a Python list would be copied there, and on CUDA that
    # copy waits for every kernel queued before it. Bit k of a byte is its k-th coin.
    masks = torch.ones(8, device=device, dtype=torch.uint8) << torch.arange(8, device=device, dtype=torch.uint8)
    return (packed.unsqueeze(-1) & masks).bool().flatten(-2)[..., :last]
