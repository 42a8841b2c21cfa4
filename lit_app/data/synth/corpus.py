"""What the synthetic corpora share: voices split by engine, each clip's random voicing and noise, the build.

The keyword and sentence corpora plan their clips alike: voices split by engine so that test voices never speak
in training, then per clip a speaking rate, pitch, duration stretch and level, and maybe background noise. Every
value is drawn from one seeded generator in a fixed order, which is what makes a corpus reproducible. They build
alike too: claim the folder (or find it complete), plan, write the noise bank, render the clips still missing,
then write the corpus's own index files.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lit_app import folders
from lit_app.data.synth import build
from lit_app.data.synth.mbrola import FRONT_ENDS, MBROLA_ACCENTED_VOICES
from lit_app.data.synth.noise import NOISE_KINDS, write_background_noise
from lit_app.data.synth.tts import Voice, available_engines, festival_voices
from lit_app.data.vocab import BACKGROUND_NOISE_FOLDER
from lit_app.splits import SPEECH_COMMANDS_SPLITS as SPLITS

EngineShares = Literal["per_voice", "per_voice_shuffled", "per_engine"]


def held_out_counts(total: int, val_fraction: float, test_fraction: float, what: str, fractions: str) -> tuple[int, int]:
    """How many of ``total`` items (voices, sentences) go to testing and to validation: at least one each (none for
    a zero fraction: a corpus without test voices trains on them all but the validation ones), always leaving some
    to train, except in a test-only corpus (``test_fraction`` 1, validation 0), which puts them all in testing.
    ``what`` names the items and ``fractions`` the settings, for the errors."""
    if test_fraction >= 1:
        if val_fraction > 0:
            raise ValueError(f"a test-only corpus (test_{fractions}: 1) has no validation {what}: set val_{fractions}: 0")
        return total, 0
    n_test = 0 if test_fraction == 0 else max(1, round(test_fraction * total))
    n_val = 0 if val_fraction == 0 else max(1, round(val_fraction * total))
    if n_test + n_val >= total:
        raise folders.CorpusError(f"{what}: only {total}, too few to hold out validation and test ones")
    return n_test, n_val


def split_voices(voices: list[Voice], val_fraction: float, test_fraction: float, rng: np.random.Generator) -> dict[str, list[Voice]]:
    """Disjoint voice sets per split, drawn per engine so every split hears every engine.

    A speaker that an engine drawn earlier already placed (:data:`~lit_app.data.synth.tts.SHARED_SPEAKERS`: flite's
    and festival's voices of one person) keeps that split; the engine's other voices fill the rest of its places
    in their drawn order, so an engine without such a speaker is split as its draw says.
    ``test_fraction=1`` with ``val_fraction=0`` puts every voice in the test split: a test-only corpus, for
    measuring a victim on an engine it never heard.

    Raises:
        CorpusError: an engine's shared speakers leave none of its voices to train on.
    """
    splits: dict[str, list[Voice]] = {split: [] for split in SPLITS}
    placed: dict[str, str] = {}  # speaker -> split
    for engine in sorted({v.engine for v in voices}):
        pool = [v for v in voices if v.engine == engine]
        order = rng.permutation(len(pool))
        n_test, n_val = held_out_counts(len(pool), val_fraction, test_fraction, f"{engine} voices", "voice_fraction")
        picked = [pool[i] for i in order]
        fixed = {voice: placed[voice.speaker] for voice in picked if voice.speaker in placed}
        free = [voice for voice in picked if voice not in fixed]
        taken = list(fixed.values())
        places = (["testing"] * max(0, n_test - taken.count("testing"))
                  + ["validation"] * max(0, n_val - taken.count("validation")))
        chosen = {**dict(zip(free, places + ["train"] * len(free))), **fixed}
        if test_fraction < 1 and "train" not in chosen.values():
            raise folders.CorpusError(f"{engine}: its voices of speakers that other engines placed in validation or test "
                                      f"({', '.join(sorted(voice.id for voice in fixed))}) leave it none to train on; "
                                      "lower val_voice_fraction or test_voice_fraction")
        for voice in picked:
            splits[chosen[voice]].append(voice)
            placed[voice.speaker] = chosen[voice]
    return {split: sorted(vs) for split, vs in splits.items()}


def speaking_turns(pool: list[Voice], count: int, rng: np.random.Generator, shares: EngineShares) -> list[Voice]:
    """The voices that speak ``count`` clips, in turns from a random start.

    ``per_voice``: every voice of ``pool`` speaks about equally often, so an engine's share of the clips is its
    share of the voices (espeak-ng's hundreds of variants drown flite's four). ``per_voice_shuffled``: the same, the
    voices in a random order, so that fewer clips than voices come from the whole list, not from consecutive
    voices (which share an espeak-ng accent). ``per_engine``: the engines take turns, then their voices do, so each
    engine speaks about ``count / engines`` clips however few voices it has.
    """
    if shares == "per_voice_shuffled":
        pool = [pool[i] for i in rng.permutation(len(pool))]
    if shares in ("per_voice", "per_voice_shuffled"):
        start = int(rng.integers(len(pool)))
        return [pool[(start + i) % len(pool)] for i in range(count)]
    by_engine = [[v for v in pool if v.engine == engine] for engine in sorted({v.engine for v in pool})]
    starts = [int(rng.integers(len(voices))) for voices in by_engine]
    first = int(rng.integers(len(by_engine)))
    turns = []
    for i in range(count):
        engine, turn = (first + i) % len(by_engine), i // len(by_engine)  # turn: the engine's clips before this one
        voices = by_engine[engine]
        turns.append(voices[(starts[engine] + turn) % len(voices)])
    return turns


def voicing(rng: np.random.Generator, settings: dict[str, Any]) -> dict[str, Any]:
    """A clip's speaking rate, pitch, duration stretch and peak level, drawn within the corpus's ranges."""
    return {
        "rate": int(rng.integers(settings["rate_range"][0], settings["rate_range"][1] + 1)),
        "pitch": int(rng.integers(settings["pitch_range"][0], settings["pitch_range"][1] + 1)),
        "stretch": round(float(rng.uniform(*settings["stretch_range"])), 3),
        "level_db": round(float(rng.uniform(*settings["level_db_range"])), 2),
    }


def background(rng: np.random.Generator, settings: dict[str, Any], noisy: bool) -> dict[str, Any]:
    """A clip's background noise: kind, where in the noise file it starts, SNR (kind and SNR empty when quiet)."""
    return {
        "noise": NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))] if noisy else "",
        "noise_offset": round(float(rng.random()), 4),
        "snr_db": round(float(rng.uniform(*settings["snr_db_range"])), 2) if noisy else "",
    }


class SyntheticCorpus(ABC):
    """A synthetic corpus's build settings (``settings``), synthesis processes and resumable build."""

    kind: str  # recorded in the folder's corpus.json: a folder of another kind is refused
    description: str  # the progress bar's text
    settings: dict[str, Any]
    num_workers: int

    def resolved_settings(self) -> dict[str, Any]:
        """The build settings with ``engines: None`` replaced by the engines installed here, and the accented voices
        installed here when ``festival_accented`` speaks (MBROLA's when one of its engines does)."""
        settings = dict(self.settings)
        settings["engines"] = settings["engines"] or list(available_engines())
        if "festival_accented" in settings["engines"]:
            # There were nine, then eleven: a folder built with other accented voices is refused, not reused.
            settings["accented_voices"] = sorted(festival_voices("festival_accented"))
        if set(FRONT_ENDS) & set(settings["engines"]):
            # The list grew from 34 to 45 voices: a folder built with another list is refused too.
            settings["mbrola_voices"] = sorted(MBROLA_ACCENTED_VOICES)
        return settings

    @abstractmethod
    def plan(self) -> tuple[list[dict[str, Any]], dict[str, list[Voice]]]:
        """Every clip's settings (with its ``path`` in the folder), in a fixed order, and the voices of each split."""

    @abstractmethod
    def renderer(self) -> Callable[..., int]:
        """The picklable function that renders a list of clip settings under ``root=`` (it runs in workers)."""

    @abstractmethod
    def write_index(self, root: Path, specs: list[dict[str, Any]], voices: dict[str, list[Voice]]) -> None:
        """Write the corpus's manifest and lists once every clip is on disk, and mark the folder complete."""

    def build(self, root: str | Path, show_progress: bool = True) -> Path:
        """Build the corpus in ``root``, or finish an interrupted build there; a complete corpus is left as is."""
        root = Path(root)
        settings = self.resolved_settings()
        if folders.claim_folder(root, self.kind, settings):
            return root
        # One writer at a time: a second build of the same corpus (another node's prepare_data, a second command)
        # waits, then finds the corpus complete, instead of sweeping the first one's temporary files.
        with folders.FolderLock(root / folders.LOCK_FILE, f"{root} (corpus build)").acquire(wait=True):
            if folders.claim_folder(root, self.kind, settings):
                return root
            folders.remove_partial_files(root)
            specs, voices = self.plan()
            write_background_noise(root / BACKGROUND_NOISE_FOLDER, settings["noise_seconds"], settings["seed"])
            render = functools.partial(self.renderer(), root=str(root))
            # A worker keeps a few festival processes of 330 MB each (:class:`Speaker`): voice by voice, it
            # starts one at a voice's first clip, not at every clip of a corpus that cycles through 19 of them.
            by_voice = sorted(specs, key=lambda spec: spec["voice"])
            build.render_missing(root, by_voice, render, self.num_workers, self.description, show_progress)
            self.write_index(root, specs, voices)
        return root
