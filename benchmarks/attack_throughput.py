"""Attack throughput beside the victim's bare cost, to show what the attack loops add.

    python benchmarks/attack_throughput.py [--device cuda] [--cw_batch_sizes '[1,16,64]'] [--genetic_batch_sizes '[8,64]']

C&W: seconds per attack step (forward + backward to the input through the DeepSpeech victim, plus the
loop's bookkeeping and a success check every 10 steps) against one bare forward + backward of the same batch,
and the resulting adversarial examples per minute for a ``--cw_steps``-step attack (1000 in the paper). Bare
and attack blocks alternate (``--rounds``), so a shared machine's drift does not enter their ratio; the range of
the per-round overheads shows how far one figure can be trusted.
Genetic: queries per second of the attack (whole populations in batched forward passes, plus selection,
crossover and mutation) against the keyword spotter's bare batched forward throughput at the same number of clips,
both through the query-only view, which answers in passes of 32 clips on the CPU (larger ones are slower per clip).
Here too a timed attack (``--generations``) and as many bare forwards of the whole population alternate in rounds.

Victims are built untrained with the demo (or ``--full``) architecture unless checkpoints are given: the cost
per step does not depend on the weights, and an untrained victim never reaches its target, so every clip
stays in the batch for every step (early stopping would otherwise make the figures depend on success).
"""

from __future__ import annotations

import datetime
import os
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
from jsonargparse import CLI

from lit_app.attacks import CarliniWagner, ClassifierVictim, CTCVictim, GeneticAttack, load_victim
from lit_app.attacks.query import QueryOnlyView
from lit_app.audio.pcm import quantize
from lit_app.benchmarking import machine, seconds_per_call
from lit_app.models.asr import DeepSpeechModule
from lit_app.models.kws import KWSModule

TARGET = "open the front door"


def paired(bare: Callable[[], object], attack: Callable[[], object], device: str, bare_calls: int, rounds: int,
           ) -> tuple[list[float], list[float]]:
    """Seconds per bare call and per attack call, measured alternately in ``rounds`` rounds after one warm-up each.

    Alternating the two keeps slow drifts of a shared machine (other processes, clock changes) out of their
    ratio: each round's ratio compares two measurements a few seconds apart.
    """
    bare()
    attack()
    bare_s, attack_s = [], []
    for _ in range(rounds):
        bare_s.append(seconds_per_call(bare, device, bare_calls, warmup=0))
        attack_s.append(seconds_per_call(attack, device, 1, warmup=0))
    return bare_s, attack_s


def cw_rows(victim: CTCVictim, device: str, batch_sizes: list[int], seconds: float, steps: int, cw_steps: int,
            rounds: int) -> None:
    samples = int(seconds * 16000)
    print(f"\nC&W on DeepSpeech ({sum(p.numel() for p in victim.module.parameters()):,} parameters), "
          f"{seconds:g} s clips, {steps} attack steps against {steps} bare steps, alternately, {rounds} rounds; "
          "medians, and the overhead's range over rounds")
    print(f"{'batch':>6} {'bare fwd+bwd s':>15} {'attack step s':>14} {'overhead':>9} {'range':>16} {'examples/min':>13}")
    for batch in batch_sizes:
        x = quantize(torch.randn(batch, samples, device=device) * 0.05)
        lengths = torch.full((batch,), samples, device=device)
        encoded = victim.encode([TARGET] * batch)

        def bare(x: torch.Tensor = x, lengths: torch.Tensor = lengths, encoded: tuple = encoded) -> None:
            d = torch.zeros_like(x, requires_grad=True)
            torch.autograd.grad(victim.loss(x + d, lengths, encoded).sum(), d)

        # patience and max_iterations make every clip take exactly `steps` steps (an untrained victim never
        # succeeds; a trained one would stop clips early and flatter the figure).
        attack = CarliniWagner(max_iterations=steps, patience=10**6)
        bare_s, attack_s = paired(bare, partial(attack, victim, x, lengths, [TARGET] * batch), device, steps, rounds)
        step_s = [a / steps for a in attack_s]
        bare_med, step_med = statistics.median(bare_s), statistics.median(step_s)
        print(f"{batch:6d} {bare_med:15.4f} {step_med:14.4f} "
              f"{median_and_range([a / b - 1 for a, b in zip(step_s, bare_s)])} "
              f"{batch * 60 / (step_med * cw_steps):13.1f}")


class ForwardClock:
    """Seconds spent inside ``module``'s forward while :attr:`running`, from hooks around it (CPU only: on a GPU the
    hooks would time the launches, not the work)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.seconds, self.running, self._start = 0.0, False, 0.0
        self.per_call: list[float] = []
        self.result: object = None
        module.register_forward_pre_hook(self._enter)
        module.register_forward_hook(self._leave)

    def around(self, call: Callable[[], object]) -> Callable[[], None]:
        """``call``, recording in :attr:`per_call` the seconds each call spends inside the forward, and in
        :attr:`result` what the last call returned."""

        def clocked() -> None:
            self.seconds, self.running = 0.0, True
            self.result = call()
            self.running = False
            self.per_call.append(self.seconds)

        return clocked

    def _enter(self, *_: object) -> None:
        self._start = time.perf_counter()

    def _leave(self, *_: object) -> None:
        if self.running:
            self.seconds += time.perf_counter() - self._start


def genetic_rows(victim: ClassifierVictim, device: str, batch_sizes: list[int], generations: int, rounds: int) -> None:
    members = 20
    print(f"\nGenetic on the keyword spotter, population {members}, {generations} generations against {generations} "
          f"bare forwards of the whole population, alternately, {rounds} rounds; medians, and the overhead's range over "
          "rounds; queue ahead: one host sync per generation (the default on CUDA), or three (the CPU's). Own work: "
          "the attack's time outside the victim's forward over the time inside it, in the same calls (CPU only)")
    print(f"{'clips':>6} {'members':>8} {'queue ahead':>12} {'bare queries/s':>15} {'attack queries/s':>17} "
          f"{'overhead':>9} {'range':>16} {'own work':>9} {'range':>16}")
    clock = ForwardClock(victim.module)
    for batch in batch_sizes:
        x = quantize(torch.randn(batch, victim.clip_samples, device=device) * 0.05)
        population = quantize(torch.randn(batch * members, victim.clip_samples, device=device) * 0.05)
        view = QueryOnlyView(victim)
        # The least likely class of each clip as target keeps every clip searching for every generation.
        with torch.no_grad():
            targets = [victim.labels[i] for i in victim.module(x).argmin(-1).tolist()]
        lengths = torch.full((batch,), victim.clip_samples, device=device)
        for queue_ahead in (False, True):
            attack = GeneticAttack(max_generations=generations, queue_ahead=queue_ahead)
            clock.per_call.clear()
            bare_s, attack_s = paired(partial(view, population), clock.around(partial(attack, victim, x, lengths, targets)),
                                      device, generations, rounds)
            inside_s = clock.per_call[1:]  # after the warm-up call
            queries = sum(r.queries for r in clock.result.results)  # the same in every call: one seed, one batch
            bare_qps = [batch * members / s for s in bare_s]
            attack_qps = [queries / s for s in attack_s]
            print(f"{batch:6d} {batch * members:8d} {str(queue_ahead):>12} {statistics.median(bare_qps):15.0f} "
                  f"{statistics.median(attack_qps):17.0f} "
                  f"{median_and_range([b / a - 1 for a, b in zip(attack_qps, bare_qps)])} "
                  f"{median_and_range([a / i - 1 for a, i in zip(attack_s, inside_s)]) if device == 'cpu' else ''}")


def median_and_range(overheads: list[float]) -> str:
    """The median overhead and its range over rounds, as two columns."""
    spread = f"{min(overheads):.1%} to {max(overheads):.1%}"
    return f"{statistics.median(overheads):9.1%} {spread:>16}"


def main(
    device: str = "cpu",
    cw_batch_sizes: list[int] = [1, 8, 32],
    genetic_batch_sizes: list[int] = [4, 32],
    clip_seconds: float = 3.0,
    cw_steps: int = 1000,
    timed_steps: int = 30,
    rounds: int = 5,
    generations: int = 10,
    full: bool = False,
    asr_checkpoint: str | None = None,
    kws_checkpoint: str | None = None,
    threads: int | None = None,
) -> None:
    """Print C&W and genetic attack throughput beside the victims' bare costs.

    Args:
        device: torch device.
        cw_batch_sizes: C&W batch sizes to measure.
        genetic_batch_sizes: clips attacked together by the genetic attack (each with 20 members).
        clip_seconds: length of the C&W clips.
        cw_steps: steps of the attack whose examples per minute are reported (1000 in the paper).
        timed_steps: C&W steps per timed attack, and bare steps per timed bare block.
        rounds: alternating bare/attack measurements per batch size (and per genetic mode).
        generations: genetic generations timed per batch size.
        full: paper-size DeepSpeech (2048 hidden units) instead of the demo size (256).
        asr_checkpoint: a DeepSpeech checkpoint to measure instead of an untrained network.
        kws_checkpoint: a keyword-spotter checkpoint to measure instead of an untrained network.
        threads: CPU threads for torch.
    """
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    # The load average shows whether other processes shared the machine while it was measured.
    print(f"{datetime.date.today()} | {machine(device)} | torch {torch.__version__} | load {os.getloadavg()[0]:.2f}")
    if asr_checkpoint:
        asr = load_victim(asr_checkpoint, device)
    else:
        asr = CTCVictim(DeepSpeechModule(n_hidden=2048 if full else 256, hop_ms=10.0 if full else 20.0,
                                         win_ms=25.0 if full else 32.0), device)
    cw_rows(asr, device, cw_batch_sizes, clip_seconds, timed_steps, cw_steps, rounds)
    kws = load_victim(kws_checkpoint, device) if kws_checkpoint else ClassifierVictim(KWSModule(padding="valid"), device)
    genetic_rows(kws, device, genetic_batch_sizes, generations, rounds)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    CLI(main)
