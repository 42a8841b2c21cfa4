"""Attacks on tiny victims: success on easy cases, bounds, padding, determinism, and black-box access only."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lit_app.attacks import (
    FGSM,
    PGD,
    PGDL2,
    CarliniWagner,
    ClassifierVictim,
    CTCVictim,
    GeneticAttack,
    HopSkipJump,
    NoiseControl,
    QueryAccessError,
    QueryOnlyView,
    SquareAttack,
    metrics,
)
from lit_app.attacks.genetic import PopulationBuffers
from lit_app.attacks.victims import CPU_CLIPS_PER_PASS, answer_in_passes
from lit_app.audio.noise import spectral_slope_noise
from lit_app.audio.pcm import FULL_SCALE
from lit_app.models.kws import KWSModule
from lit_app.text import Alphabet, greedy_decode
from tests.conftest import save_checkpoint

SAMPLES = 4000


def tones(freqs: tuple[float, ...], samples: int = SAMPLES) -> torch.Tensor:
    t = torch.arange(samples) / 16000
    window = torch.hann_window(samples)
    return torch.stack([0.3 * torch.sin(2 * math.pi * f * t) * window for f in freqs])


def padded_tones() -> tuple[torch.Tensor, torch.Tensor]:
    """Two tones of the full length and one of 3,000 samples, zero-padded."""
    x = torch.zeros(3, SAMPLES)
    x[:2], x[2, :3000] = tones((300.0, 500.0)), tones((900.0,), samples=3000)[0]
    return x, torch.tensor([SAMPLES, SAMPLES, 3000])


def tiny_kws(seed: int = 0) -> ClassifierVictim:
    """An untrained keyword spotter on 0.25 s clips: random, but its outputs respond to its input."""
    torch.manual_seed(seed)
    return ClassifierVictim(KWSModule(n_mfcc=20, clip_samples=SAMPLES, dropout=0.0))


def ranked_targets(victim: ClassifierVictim, x: torch.Tensor, rank: int) -> list[str]:
    """For each clip, the class the victim ranks ``rank``-th (1 = runner-up: an easy target)."""
    with torch.no_grad():
        order = victim.module(x).argsort(-1, descending=True)
    return [victim.labels[i] for i in order[:, rank].tolist()]


class TinyCTC(nn.Module):
    """The smallest CTC recogniser with DeepSpeechModule's interface: one linear map per 10 ms frame."""

    hop = 160

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.alphabet = Alphabet()
        self.frame = nn.Conv1d(1, len(self.alphabet), kernel_size=self.hop, stride=self.hop)
        with torch.no_grad():
            self.frame.bias[0] += 3.0  # blank-heavy when idle, as trained CTC models are

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(lengths, self.hop, rounding_mode="floor")

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.frame(waveforms.unsqueeze(1) * 50).transpose(1, 2)
        return F.log_softmax(logits, -1), self.output_lengths(lengths)

    @torch.no_grad()
    def transcribe(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        return greedy_decode(*self(waveforms, lengths), self.alphabet)


def on_grid(x: torch.Tensor) -> bool:
    return bool(torch.equal(x * 32768, torch.round(x * 32768)))


# ---- metrics ---------------------------------------------------------------------------------------------------

def test_distortion_metrics_match_their_definitions():
    clean = torch.zeros(1, 100)
    clean[0, :50] = 0.5
    adv = clean.clone()
    adv[0, 10] += 0.005
    lengths = torch.tensor([100])
    assert metrics.db_x(clean, adv, lengths).item() == pytest.approx(20 * math.log10(0.005 / 0.5), abs=1e-3)
    assert metrics.snr_db(clean, adv, lengths).item() == pytest.approx(10 * math.log10(50 * 0.25 / 0.005**2), abs=1e-3)
    assert metrics.linf_int16(clean, adv, lengths).item() == round(0.005 * 32768)
    # Changes past a clip's length do not count.
    adv[0, 90] = 0.9
    assert metrics.linf_int16(clean, adv, torch.tensor([80])).item() == round(0.005 * 32768)
    assert on_grid(metrics.quantize(torch.rand(3, 10) * 2 - 1))


# ---- genetic (black-box) ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("queue_ahead", "fitness", "temperature"),
                         [(False, "probability", 0.01), (True, "probability", 0.01), (False, "log_probability", 1.0)])
def test_genetic_attack_reaches_easy_targets_within_its_noise_bound(queue_ahead: bool, fitness: str,
                                                                     temperature: float):
    victim = tiny_kws()
    x = tones((300.0, 500.0, 900.0))
    targets = ranked_targets(victim, x, 1)
    attack = GeneticAttack(max_generations=30, mutation_bound=2048, noise_bound=1500, queue_ahead=queue_ahead,
                           fitness=fitness, temperature=temperature)
    out = attack(victim, x, torch.full((3,), SAMPLES), targets, seed=0)
    assert all(r.success and r.prediction == r.target for r in out.results)
    for r in out.results:
        # Successful clips stop at once, well inside the budget of 30 generations of 20.
        # The elites are not asked again: 20 queries in the first generation, 18 in each after it.
        assert r.linf <= 1500 and r.queries == 20 + 18 * (r.iterations - 1) and 20 <= r.queries < 600
    assert on_grid(out.adversarial)
    assert metrics.linf_int16(metrics.quantize(x), out.adversarial, torch.full((3,), SAMPLES)).max() <= 1500


def test_genetic_attack_is_deterministic_for_a_seed():
    victim = tiny_kws()
    x = tones((300.0, 800.0))
    targets = ranked_targets(victim, x, 2)
    attack = GeneticAttack(max_generations=5)
    first = attack(victim, x, torch.full((2,), SAMPLES), targets, seed=3)
    again = attack(victim, x, torch.full((2,), SAMPLES), targets, seed=3)
    other = attack(victim, x, torch.full((2,), SAMPLES), targets, seed=4)
    assert torch.equal(first.adversarial, again.adversarial) and first.results == again.results
    assert not torch.equal(first.adversarial, other.adversarial)


@pytest.mark.parametrize(("attack", "rank"), [(SquareAttack(epsilon=256, max_queries=60), 3),
                                              (HopSkipJump(max_queries=250, start_queries=100), 2)],
                         ids=["square", "hop_skip_jump"])
def test_random_search_attacks_are_deterministic_for_a_seed_on_padded_clips(attack, rank: int):
    victim = tiny_kws()
    x, lengths = padded_tones()
    targets = ranked_targets(victim, x, rank)
    first, again, other = (attack(victim, x, lengths, targets, seed=s) for s in (3, 3, 4))
    assert torch.equal(first.adversarial, again.adversarial) and first.results == again.results
    assert not torch.equal(first.adversarial, other.adversarial)


def test_genetic_attack_gives_the_same_clips_whatever_the_forward_pass_size():
    """On the CPU the victim answers in cache-sized passes: the choice must change the speed only."""
    victim = tiny_kws()
    x = tones((300.0, 500.0, 700.0, 900.0))
    targets = ranked_targets(victim, x, 5)
    passes = []
    victim.module.register_forward_hook(lambda _module, inputs, _output: passes.append(inputs[0].shape[0]))
    outputs = {}
    for most in (1024, 3):
        passes.clear()
        attack = GeneticAttack(max_generations=4, population_size=10, max_batch_clips=most)
        outputs[most] = attack(victim, x, torch.full((4,), SAMPLES), targets, seed=0)
        assert passes[0] == min(most, CPU_CLIPS_PER_PASS)  # the first generation's 40 members: more than either
    assert torch.equal(outputs[1024].adversarial, outputs[3].adversarial) and outputs[1024].results == outputs[3].results
    off_cpu = []  # elsewhere (a GPU) one pass takes the whole call
    answer_in_passes(lambda waveforms: off_cpu.append(waveforms.shape[0]) or waveforms, torch.empty(1024, 4, device="meta"))
    assert off_cpu == [1024]


@pytest.mark.parametrize("queue_ahead", [False, True])
def test_genetic_attack_uses_probabilities_only_and_counts_queries(queue_ahead: bool):
    victim = tiny_kws()
    x = tones((300.0, 500.0, 700.0))
    targets = ranked_targets(victim, x, 5)  # hard: runs the whole budget for some clips
    grad_modes = []
    victim.module.register_forward_hook(lambda *_: grad_modes.append(torch.is_grad_enabled()))
    view = QueryOnlyView(victim)
    attack = GeneticAttack(max_generations=6, population_size=10, elite_size=2, queue_ahead=queue_ahead)
    index = torch.tensor([victim.labels.index(t) for t in targets])
    adversarial, queries, generations = attack.search(view, metrics.quantize(x), torch.full((3,), SAMPLES), index,
                                                      torch.Generator().manual_seed(0))
    assert view.queries == int(queries.sum()) and int(queries.max()) <= 10 + 8 * 5
    # The whole population of every clip goes through one forward pass per generation.
    assert len(grad_modes) == int(generations.max()) and not any(grad_modes)
    assert all(p.grad is None for p in victim.module.parameters())


@pytest.mark.parametrize("queue_ahead", [False, True])
def test_genetic_generation_waits_for_the_device_once_when_queueing_ahead(monkeypatch, queue_ahead: bool):
    """Reading a tensor's value on the host (bool, int, item, tolist) waits for a GPU's queue to drain: queueing
    ahead leaves one such wait per generation, the ``nonzero`` of the clips still searching."""
    victim = tiny_kws()
    x = tones((300.0, 500.0, 700.0))
    index = torch.tensor([victim.labels.index(t) for t in ranked_targets(victim, x, 5)])
    attack = GeneticAttack(max_generations=6, population_size=10, elite_size=2, queue_ahead=queue_ahead)
    reads = []
    for name in ("__bool__", "__int__", "__float__", "item", "tolist"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda t, *a, _o=original, _n=name: reads.append(_n) or _o(t, *a))
    attack.search(QueryOnlyView(victim), metrics.quantize(x), torch.full((3,), SAMPLES), index,
                  torch.Generator().manual_seed(0))
    monkeypatch.undo()
    if queue_ahead:
        assert reads == ["__int__"]  # the longest clip, once, to fix the mutation draws
    else:
        assert len(reads) >= 2 * 5  # the end-of-search checks and the largest mutation count, every generation


def test_genetic_settings_record_later_options_only_when_chosen():
    """Corpora record the attack's settings and refuse to resume under others: options added later must not
    change the record of corpora built before they existed, unless they are set."""
    assert "queue_ahead" not in GeneticAttack().settings() and "fitness" not in GeneticAttack().settings()
    # The released code's stop rule became the default after the first corpora: it is recorded, the old one not.
    assert GeneticAttack().settings()["stop"] == "best_member" and "stop" not in GeneticAttack(stop="any_member").settings()
    with pytest.raises(ValueError, match="stop"):
        GeneticAttack(stop="first")  # type: ignore[arg-type]
    assert GeneticAttack(queue_ahead=True).settings()["queue_ahead"] is True
    assert GeneticAttack(fitness="log_probability").settings()["fitness"] == "log_probability"
    with pytest.raises(ValueError, match="fitness"):
        GeneticAttack(fitness="logit")  # type: ignore[arg-type]


def test_genetic_log_probability_selection_keeps_its_pressure_on_tiny_probabilities():
    fitness = torch.tensor([[1e-3, 1e-4, 1e-4, 0.0], [0.9, 0.5, 0.5, 0.5]])
    paper = GeneticAttack().parent_weights(fitness)
    assert paper[0].max() / paper[0].min() < 1.2  # all far below the temperature: nearly uniform
    assert paper[1, 0] > 0.99  # 0.4 apart, 40 temperatures: only the best breeds
    proportional = GeneticAttack(fitness="log_probability", temperature=1.0).parent_weights(fitness)
    assert torch.allclose(proportional, fitness / fitness.sum(1, keepdim=True), atol=1e-6)
    assert proportional.isfinite().all() and (proportional[0, 3] >= 0)


class ScriptedAnswers(nn.Module):
    """A victim over the labels a, b, c that answers each call's rows by position: row 0 ``first``, row 1
    ``second``, every other row a confident ``a`` (so a generation's first two queried members get them)."""

    labels = ["a", "b", "c"]
    hparams: dict = {}

    def __init__(self, first: list[float], second: list[float]) -> None:
        super().__init__()
        self.first, self.second = torch.tensor(first), torch.tensor(second)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        logits = torch.tensor([8.0, 0.0, 0.0]).repeat(waveforms.shape[0], 1)
        logits[0], logits[1] = self.first, self.second
        return logits


# Target b. Fittest but not classified as b: p(b) = 0.48 < p(c). Classified as b but less fit: p(b) = 0.34.
FITTEST_LOSES, LESS_FIT_WINS = [-30.0, 2.0, 2.1], [1.0, 1.05, 1.0]


@pytest.mark.parametrize(("stop", "generations"), [("best_member", 5), ("any_member", 1)])
def test_genetic_attack_stops_when_its_best_member_reaches_the_target(stop: str, generations: int):
    """The released code stops when the member with the highest target probability is classified as the target;
    a less fit member classified as the target does not stop the search (unless ``stop="any_member"``)."""
    victim = ClassifierVictim(ScriptedAnswers(FITTEST_LOSES, LESS_FIT_WINS))
    attack = GeneticAttack(max_generations=5, population_size=6, elite_size=2, stop=stop)
    x = torch.zeros(1, SAMPLES)
    _, queries, spent = attack.search(QueryOnlyView(victim), x, torch.tensor([SAMPLES]), torch.tensor([1]),
                                      torch.Generator().manual_seed(0))
    assert int(spent[0]) == generations and int(queries[0]) == 6 + 4 * (generations - 1)
    # Where the fittest member is classified as the target, both rules stop at once.
    victim = ClassifierVictim(ScriptedAnswers([0.0, 3.0, 0.0], LESS_FIT_WINS))
    _, _, spent = attack.search(QueryOnlyView(victim), x, torch.tensor([SAMPLES]), torch.tensor([1]),
                                torch.Generator().manual_seed(0))
    assert int(spent[0]) == 1


def test_genetic_stop_rule_returns_the_member_it_stopped_on():
    probabilities = torch.stack([torch.softmax(torch.tensor(logits), 0) for logits in
                                 (FITTEST_LOSES, LESS_FIT_WINS, [8.0, 0.0, 0.0])]).unsqueeze(0)  # [1 clip, 3, 3]
    fitness, target = probabilities[..., 1], torch.tensor([1])
    choice, done = GeneticAttack().stop_rule(probabilities, fitness, target)
    assert choice.tolist() == [0] and done.tolist() == [False]  # the fittest member, still searching
    choice, done = GeneticAttack(stop="any_member").stop_rule(probabilities, fitness, target)
    assert choice.tolist() == [1] and done.tolist() == [True]


class Overconfident(nn.Module):
    """A victim whose logits are scaled up, as a well-trained model's are: classes other than its choice get
    vanishing probabilities."""

    def __init__(self, module: nn.Module, scale: float) -> None:
        super().__init__()
        self.inner, self.scale, self.labels, self.hparams = module, scale, module.labels, module.hparams

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        return self.inner(waveforms) * self.scale


def test_genetic_log_probability_selection_gets_further_against_a_confident_victim():
    victim = ClassifierVictim(Overconfident(tiny_kws().module, scale=100.0))
    x = tones((300.0, 500.0, 700.0, 900.0))
    targets = ranked_targets(victim, x, 5)  # target probabilities 1e-20 to 1e-28 before the attack
    generations = {}
    for fitness, temperature in (("probability", 0.01), ("log_probability", 1.0)):
        attack = GeneticAttack(max_generations=30, fitness=fitness, temperature=temperature)
        out = attack(victim, x, torch.full((4,), SAMPLES), targets, seed=0)
        generations[fitness] = [r.iterations for r in out.results]
        if fitness == "log_probability":
            assert all(r.success for r in out.results)
    # Within the same budget, every clip reaches its target in fewer generations (measured: 3-21 against 5-30,
    # where one clip of the paper's selection never gets there).
    assert all(a < b for a, b in zip(generations["log_probability"], generations["probability"]))


def test_genetic_mutation_draws_fixed_in_advance_bound_the_mutated_samples():
    attack = GeneticAttack(mutation_probability=0.0005)
    assert 30 <= attack.mutation_draws(16000) <= 40  # mean 8, sd 2.8
    heavy = GeneticAttack(mutation_probability=0.3, mutation_bound=100, noise_bound=100)
    delta = heavy.mutate(torch.zeros(2, 4, 1000), torch.zeros(2, 1000), torch.tensor([1000, 1000]),
                         torch.Generator().manual_seed(0), draws=3)
    assert 0 < int((delta != 0).sum(-1).max()) <= 3


def test_genetic_generations_bred_in_reused_buffers_equal_fresh_ones():
    """The search breeds into buffers it allocates once; the next generation must never be written over the
    population it is bred from, and the clips kept after some finish must be the same members."""
    attack = GeneticAttack(population_size=6, elite_size=2, mutation_probability=0.05)
    clips, samples = 4, 500
    x = torch.randint(-3000, 3000, (clips, samples)).float()
    lengths = torch.tensor([500, 400, 500, 250])
    delta = attack.mutate(torch.zeros(clips, 6, samples), x, lengths, torch.Generator().manual_seed(0))
    fitness = torch.rand(clips, 6, generator=torch.Generator().manual_seed(1))
    elites = fitness.topk(2, dim=1).indices
    buffers = PopulationBuffers(clips, 6, 4, samples, torch.device("cpu"))
    current = buffers.population(clips)
    current.copy_(delta)
    fresh = attack.next_generation(delta, fitness, elites, x, lengths, torch.Generator().manual_seed(2),
                                   PopulationBuffers(clips, 6, 4, samples, torch.device("cpu")))
    reused = attack.next_generation(current, fitness, elites, x, lengths, torch.Generator().manual_seed(2), buffers)
    assert torch.equal(fresh, reused) and not torch.equal(fresh, delta)
    assert torch.equal(current, delta)  # the parents' buffer is untouched
    kept = buffers.keep(reused, torch.tensor([0, 3]))
    assert torch.equal(kept, fresh[[0, 3]]) and kept.data_ptr() == current.data_ptr()


def test_query_only_view_refuses_white_box_access():
    victim = tiny_kws()
    view = QueryOnlyView(victim, max_queries=4)
    probabilities = view(tones((300.0, 400.0)))
    assert probabilities.shape == (2, 12) and not probabilities.requires_grad and probabilities.grad_fn is None
    assert torch.allclose(probabilities.sum(-1), torch.ones(2))
    for attempt in (view.parameters, view.state_dict, lambda: view.module, lambda: view.net, lambda: view.forward):
        with pytest.raises(QueryAccessError):
            attempt()
    with pytest.raises(QueryAccessError, match="no gradients"):
        view(tones((300.0,)).requires_grad_())
    with pytest.raises(RuntimeError, match="budget"):
        view(tones((300.0, 400.0, 500.0)))
    assert view.queries == 2


# ---- white-box attacks on the classifier -------------------------------------------------------------------------

def test_pgd_stays_inside_epsilon_and_succeeds_on_easy_targets():
    victim = tiny_kws()
    x = tones((300.0, 600.0, 900.0))
    targets = ranked_targets(victim, x, 1)
    out = PGD(epsilon=512, step_size=64, iterations=30)(victim, x, torch.full((3,), SAMPLES), targets, seed=0)
    assert all(r.success for r in out.results) and max(r.linf for r in out.results) <= 512
    assert all(r.iterations < 30 for r in out.results)  # stopped at the first successful check
    fgsm = FGSM(epsilon=300)(victim, x, torch.full((3,), SAMPLES), targets)
    assert all(r.linf <= 300 and r.iterations == 1 for r in fgsm.results)


def test_pgd_l2_stays_inside_its_l2_ball_runs_every_step_and_reaches_easy_targets():
    victim = tiny_kws()
    x, lengths = padded_tones()
    targets = ranked_targets(victim, x, 1)
    out = PGDL2(epsilon=400, step_size=100, iterations=8)(victim, x, lengths, targets, seed=0)
    assert all(r.success for r in out.results) and all(r.iterations == 8 for r in out.results)
    change = (out.adversarial - x) * FULL_SCALE
    # Rounding to the 16-bit grid moves each sample by at most half a unit: sqrt(n) / 2 over n samples.
    assert bool((change.norm(dim=1) <= 400 + math.sqrt(SAMPLES) / 2).all()) and on_grid(out.adversarial)
    assert bool((change[2, 3000:] == 0).all())  # padding is left alone
    with pytest.raises(ValueError, match="positive"):
        PGDL2(epsilon=0)


def test_carlini_wagner_on_the_classifier_shrinks_its_bound():
    victim = tiny_kws()
    x = tones((300.0, 600.0))
    targets = ranked_targets(victim, x, 3)
    out = CarliniWagner(max_iterations=100, learning_rate=20)(victim, x, torch.full((2,), SAMPLES), targets, seed=0)
    assert all(r.success for r in out.results)
    # Every success shrinks the bound below the largest change so far, far under the initial 2000.
    assert all(r.linf < 2000 * 0.8 for r in out.results) and on_grid(out.adversarial)


# ---- Carlini & Wagner on a CTC recogniser --------------------------------------------------------------------------

def ctc_batch() -> tuple[torch.Tensor, torch.Tensor]:
    x = tones((300.0, 500.0, 700.0), samples=8000) * 0.5
    lengths = torch.tensor([8000, 6400, 4000])
    x = x * metrics.valid_mask(lengths, 8000)
    return x, lengths


def test_carlini_wagner_ctc_reaches_targets_and_respects_padding():
    victim = CTCVictim(TinyCTC())
    x, lengths = ctc_batch()
    targets = ["open the door", "yes", "go"]
    attack = CarliniWagner(max_iterations=300, learning_rate=20, patience=3)
    out = attack(victim, x, lengths, targets, seed=0)
    assert [r.prediction for r in out.results] == targets and all(r.success for r in out.results)
    # Success was judged on the 16-bit clip that is returned (and would be written).
    assert on_grid(out.adversarial) and victim.predict(out.adversarial, lengths) == targets
    for row, length in enumerate(lengths.tolist()):
        assert torch.all(out.adversarial[row, length:] == 0)
    assert all(r.linf < 2000 * 0.8 and r.db_x < -10 for r in out.results)
    # Clips stop on their own (patience after success) and queries count steps plus checks.
    assert all(r.iterations < 300 for r in out.results)
    assert all(r.queries == r.iterations + math.ceil(r.iterations / 10) for r in out.results)


def test_carlini_wagner_ctc_is_deterministic_and_reports_infeasible_targets():
    victim = CTCVictim(TinyCTC())
    x, lengths = ctc_batch()
    # 4000 samples give 25 frames: too few for this target.
    targets = ["yes", "no", "a target far too long for twenty five frames"]
    attack = CarliniWagner(max_iterations=60, learning_rate=20)
    first, again = attack(victim, x, lengths, targets, seed=1), attack(victim, x, lengths, targets, seed=1)
    assert torch.equal(first.adversarial, again.adversarial)
    last = first.results[2]
    assert not last.feasible and not last.success and last.iterations == 0 and last.linf == 0


def test_carlini_wagner_runs_on_the_deepspeech_victim_from_its_checkpoint(tmp_path):
    from lit_app.attacks import load_victim
    from lit_app.models.asr import DeepSpeechModule

    torch.manual_seed(0)
    module = DeepSpeechModule(n_hidden=32, n_mfcc=13, n_mels=20, hop_ms=20.0, win_ms=32.0, context=2)
    save_checkpoint(module, tmp_path / "asr.ckpt")
    victim = load_victim(tmp_path / "asr.ckpt")
    assert isinstance(victim, CTCVictim) and not victim.module.training
    x, lengths = ctc_batch()
    out = CarliniWagner(max_iterations=20, learning_rate=50, initial_bound=500)(victim, x, lengths, ["yes", "no", "go"])
    assert all(r.linf <= 500 and r.iterations == 20 for r in out.results)
    assert out.adversarial[:, 4000:][2].abs().sum() == 0 and on_grid(out.adversarial)
    assert all(p.grad is None for p in victim.module.parameters())


def test_carlini_wagner_shrinks_the_whole_perturbation_when_its_bound_shrinks():
    """Carlini's code scales the clipped perturbation by ``rescale``: every sample shrinks by the same factor. The
    earlier clip rule cut only the samples above the new bound."""
    delta = torch.tensor([[1500.0, -700.0, 100.0, 0.0], [2600.0, -300.0, 50.0, 10.0]]) / 32768
    attack = CarliniWagner(initial_bound=2000, bound_decay=0.8)
    heard = attack.perturbation(delta, torch.ones(2))
    assert torch.allclose(heard[1] * 32768, torch.tensor([2000.0, -300.0, 50.0, 10.0]))  # clipped to tau0 first
    scale = attack.rescaled(delta, torch.ones(2))
    # Clip 0: the bound (2000) was above the peak (1500): down to it, then x0.8. Clip 1's peak reaches tau0.
    assert scale.tolist() == pytest.approx([1500 / 2000 * 0.8, 0.8])
    after = attack.perturbation(delta, scale)
    assert torch.allclose(after, heard * scale.unsqueeze(1))  # same shape, every sample x0.6 (x0.8)
    assert after[0, 1] * 32768 == pytest.approx(-700 * 0.6) and after[0, 0] * 32768 == pytest.approx(1500 * 0.6)
    # A later success with a smaller peak than the bound: the bound drops to the peak of clip(delta) * scale first.
    assert attack.rescaled(delta[:1] / 4, scale[:1]).item() == pytest.approx(375 / 2000 * 0.8)
    clip_rule = CarliniWagner(bound_rule="clip")
    assert clip_rule.perturbation(delta, scale) is delta  # the clip rule keeps delta inside its bound itself


def test_carlini_wagner_as_published_runs_every_step_and_stops_early_only_when_asked():
    victim = CTCVictim(TinyCTC())
    x, lengths = ctc_batch()
    targets = ["yes", "go", "no"]
    paper = CarliniWagner(max_iterations=80, learning_rate=20)
    out = paper(victim, x, lengths, targets, seed=0)
    assert all(r.success for r in out.results)
    assert all(r.iterations == 80 and r.queries == 80 + 8 for r in out.results)  # no early stop after success
    early = CarliniWagner(max_iterations=80, learning_rate=20, patience=1)(victim, x, lengths, targets, seed=0)
    assert all(r.success for r in early.results) and min(r.iterations for r in early.results) < 80
    # Running on shrinks further: never a larger perturbation than the early-stopped one, and a smaller one overall.
    assert all(p.linf <= e.linf for p, e in zip(out.results, early.results))
    assert sum(p.linf for p in out.results) < sum(e.linf for e in early.results)


def test_carlini_wagner_settings_record_the_bound_rule_of_new_corpora_only():
    """Corpora built before the rescale rule (clip rule) keep their recorded settings; new ones name their rule."""
    assert "bound_rule" not in CarliniWagner(bound_rule="clip").settings()
    assert CarliniWagner().settings()["bound_rule"] == "rescale"
    with pytest.raises(ValueError, match="bound_rule"):
        CarliniWagner(bound_rule="shrink")  # type: ignore[arg-type]


def test_carlini_wagner_paper_config_has_no_early_stop_and_the_demo_config_says_it_has():
    import yaml

    from tests.conftest import CONFIGS

    paper = yaml.safe_load((CONFIGS / "attacks" / "cw_deepspeech.yaml").read_text())["init_args"]
    assert paper["max_iterations"] == 1000 and paper["patience"] is None and paper["min_bound"] is None
    assert paper["bound_rule"] == "rescale" and CarliniWagner(**paper).settings() == CarliniWagner().settings()
    for name in ("cw_deepspeech_demo.yaml", "cw_kws.yaml"):
        text = (CONFIGS / "attacks" / name).read_text()
        assert "EARLY STOPPING" in text and yaml.safe_load(text)["init_args"]["patience"] is not None


# ---- noise control ---------------------------------------------------------------------------------------------------

def test_noise_control_hits_the_requested_snr_per_clip():
    victim = tiny_kws()
    x = tones((300.0, 500.0, 700.0))
    lengths = torch.tensor([SAMPLES, SAMPLES, 3000])
    x = x * metrics.valid_mask(lengths, SAMPLES)
    out = NoiseControl()(victim, x, lengths, ["yes", "no", "up"], seed=0, snr_db=[10.0, 20.0, 35.0])
    assert [r.snr_db for r in out.results] == pytest.approx([10.0, 20.0, 35.0], abs=0.2)
    assert torch.all(out.adversarial[2, 3000:] == 0)
    assert NoiseControl(snr_db=15.0)(victim, x, lengths, ["yes", "no", "up"]).results[0].snr_db == pytest.approx(15.0, abs=0.2)


def test_coloured_noise_has_the_requested_spectral_slope():
    slopes = torch.tensor([1.0, 0.0, -1.0, -2.0])
    noise = spectral_slope_noise((4, 32000), slopes, torch.Generator().manual_seed(0))
    assert noise.pow(2).mean(1) == pytest.approx(torch.ones(4), rel=1e-4)
    power = torch.fft.rfft(noise, dim=1).abs().pow(2)[:, 1:]
    bands = power.reshape(4, 16, -1).mean(2)  # 16 equal bands; the slope from the 2nd to the 16th
    centres = torch.arange(16) + 0.5
    fitted = torch.log(bands[:, 15] / bands[:, 1]) / math.log(centres[15] / centres[1])
    assert fitted.tolist() == pytest.approx(slopes.tolist(), abs=0.15)


def test_coloured_noise_control_hits_the_snr_and_draws_its_slopes_from_the_range():
    victim = tiny_kws()
    x = tones((300.0, 500.0, 700.0))
    lengths = torch.tensor([SAMPLES, SAMPLES, 3000])
    x = x * metrics.valid_mask(lengths, SAMPLES)
    out = NoiseControl(distribution="coloured", slopes=(-2.0, -1.0))(victim, x, lengths, ["yes", "no", "up"], seed=0,
                                                                    snr_db=[10.0, 20.0, 35.0])
    assert [r.snr_db for r in out.results] == pytest.approx([10.0, 20.0, 35.0], abs=0.2)
    assert torch.all(out.adversarial[2, 3000:] == 0)
    residual = torch.fft.rfft(out.adversarial[0] - x[0]).abs().pow(2)
    assert residual[1:800].mean() > 20 * residual[-800:].mean()  # pink to brown: most power low
    with pytest.raises(ValueError, match="range"):
        NoiseControl(distribution="coloured", slopes=(2.0, 1.0))
    with pytest.raises(ValueError, match="leaves nothing"):
        NoiseControl(distribution="coloured", slopes=(-0.5, 0.5), min_abs_slope=0.5)


def test_noise_settings_survive_a_json_manifest_and_white_noise_records_no_colour():
    assert NoiseControl().settings() == {"snr_db": 30.0, "distribution": "gaussian"}  # as the built sets recorded
    coloured = NoiseControl(distribution="coloured", slopes=[-2, 1.5], min_abs_slope=0.5)
    assert json.loads(json.dumps(coloured.settings())) == coloured.settings()


def test_coloured_noise_slopes_skip_the_white_gap_uniformly():
    control = NoiseControl(distribution="coloured", slopes=(-2.0, 1.0), min_abs_slope=0.5)
    slopes = control.draw_slopes(20000, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert slopes.abs().min() >= 0.5 and slopes.min() >= -2.0 and slopes.max() <= 1.0
    assert (slopes > 0).float().mean().item() == pytest.approx(0.25, abs=0.02)  # 0.5 of the 2.0 left is blue


def test_genetic_mutation_keeps_both_bounds_and_the_int16_range():
    attack = GeneticAttack(mutation_probability=0.3, mutation_bound=3000, noise_bound=2000)
    x = torch.full((2, 1000), 32767.0)
    x[1] = -32768.0
    generator = torch.Generator().manual_seed(0)
    delta = torch.zeros(2, 6, 1000)
    for _ in range(5):
        delta = attack.mutate(delta, x, torch.tensor([1000, 600]), generator, first=1)
    assert torch.all(delta[:, 0] == 0)  # elites are not mutated
    assert delta.abs().max() <= 2000 and (delta[:, 1:] != 0).float().mean() > 0.2
    assert torch.all(x[0] + delta[0] <= 32767) and torch.all(x[1] + delta[1] >= -32768)
    assert torch.all(delta[1, :, 600:] == 0)  # nothing past a clip's length


def test_final_judgement_sees_each_clip_alone_at_its_own_length():
    from lit_app.attacks.base import judge

    class PaddingSensitive:
        """Answers with the width of the batch it is shown: a recogniser whose end frames see the padding."""

        def predict(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> list[str]:
            return [str(waveforms.shape[1])] * waveforms.shape[0]

    clips = torch.zeros(3, 800)
    assert judge(PaddingSensitive(), clips, torch.tensor([800, 500, 300])) == ["800", "500", "300"]
    assert judge(PaddingSensitive(), clips, torch.tensor([500, 500, 500])) == ["500"] * 3


# ---- the shared prelude ----------------------------------------------------------------------------------------------

def test_every_attack_starts_from_the_batch_the_base_class_prepares():
    """Encoding the targets, feasibility, the valid-sample mask and the counters are made once, in the base class."""
    from lit_app.attacks.base import Attack, AttackBatch

    seen: list[AttackBatch] = []

    class Echo(Attack):
        name = "echo"

        def run(self, victim, batch, **conditions):
            seen.append(batch)
            batch.queries[batch.feasible_rows()] += 2
            return batch.clean

    victim = CTCVictim(TinyCTC())
    x, lengths = ctc_batch()
    out = Echo()(victim, x, lengths, ["Yes", "no", "a target far too long for twenty five frames"])
    batch = seen[0]
    assert batch.targets == ["yes", "no", "a target far too long for twenty five frames"]
    assert batch.feasible.tolist() == [True, True, False] and batch.feasible_rows().tolist() == [0, 1]
    assert batch.mask.dtype == torch.float32 and batch.mask.sum(1).tolist() == lengths.tolist()
    assert [r.queries for r in out.results] == [2, 2, 0] and [r.feasible for r in out.results] == [True, True, False]
    assert on_grid(batch.clean) and torch.all(batch.clean[2, 4000:] == 0)
    # The noise control aims at no target: every clip is feasible whatever the victim could transcribe.
    noise = NoiseControl()(victim, x, lengths, ["yes", "no", "a target far too long for twenty five frames"])
    assert all(r.feasible for r in noise.results)


def test_carlini_wagner_runs_on_the_mozilla_deepspeech_victim_from_its_checkpoint(tmp_path):
    """The published victim: white-box gradients through the MFCC front-end, the LSTM and the CTC loss."""
    from lit_app.attacks import load_victim
    from lit_app.models.asr import DeepSpeechModule

    torch.manual_seed(0)
    module = DeepSpeechModule(architecture="mozilla_0.1", n_hidden=32, n_mels=26, hop_ms=20.0, context=9)
    victim = load_victim(save_checkpoint(module, tmp_path / "mozilla.ckpt"))
    assert isinstance(victim, CTCVictim) and victim.module.hparams.architecture == "mozilla_0.1"
    x, lengths = ctc_batch()
    out = CarliniWagner(max_iterations=20, learning_rate=50, initial_bound=500)(victim, x, lengths, ["yes", "no", "go"])
    assert all(r.linf <= 500 and r.iterations == 20 and r.linf > 0 for r in out.results)
    assert out.adversarial[2, 4000:].abs().sum() == 0 and on_grid(out.adversarial)
