"""How an adversarial set chooses its clips: source clips per split, their targets, the clean clips beside them,
and the numbered, batched jobs that ``plan.json`` stores.

Every choice follows from the set's seed (and, for ``require_correct``, the victim's answers), so a resumed build
or a shard on another device reads the same plan.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from lit_app.advsets import manifest
from lit_app.attacks.victims import ClassifierVictim, Victim
from lit_app.audio.io import AudioPolicy, read_audio
from lit_app.audio.pcm import quantize
from lit_app.data.source_clip import SourceClip
from lit_app.splits import SPLITS

log = logging.getLogger(__name__)

SILENT_PEAK = 10 ** (-60 / 20)  # -60 dBFS
Stratify = Literal["label", "duration", "none"]
#: a clip to attack (or, with an empty target, to serve clean), its target and the SNR a noise control must match
Job = tuple[SourceClip, str, float | None]


def order_clips(clips: list[SourceClip], stratify: Stratify, rng: np.random.Generator) -> list[SourceClip]:
    """Clips shuffled and interleaved round-robin over the strata, so any prefix is balanced."""
    if stratify == "label":
        key = {c.id: c.label for c in clips}
    elif stratify == "duration" and clips:
        edges = np.quantile([c.num_samples for c in clips], [1 / 3, 2 / 3])
        key = {c.id: str(int(np.searchsorted(edges, c.num_samples, side="right"))) for c in clips}
    else:
        key = {c.id: "" for c in clips}
    strata: dict[str, list[SourceClip]] = defaultdict(list)
    for clip in clips:
        strata[key[clip.id]].append(clip)
    shuffled = [[group[i] for i in rng.permutation(len(group))] for _, group in sorted(strata.items())]
    # The strata take turns in random order too: a small selection must not always favour the same classes.
    shuffled = [shuffled[i] for i in rng.permutation(len(shuffled))]
    return [group[i] for i in range(max(map(len, shuffled), default=0)) for group in shuffled if i < len(group)]


def choose_sources(clips: list[SourceClip], victim: Victim, sources_per_split: dict[str, int],
                   source_labels: list[str] | None, stratify: Stratify, require_correct: bool, seed: int,
                   where: Path) -> list[SourceClip]:
    """The clips to attack in each split: in :func:`order_clips` order, those :func:`screen` lets through."""
    chosen: list[SourceClip] = []
    for index, split in enumerate(SPLITS):
        wanted = sources_per_split.get(split, 0)
        candidates = [c for c in clips if c.split == split and (source_labels is None or c.label in source_labels)]
        order = order_clips(candidates, stratify, np.random.default_rng([seed, index]))
        picked: list[SourceClip] = []
        for start in range(0, len(order), 128):
            if len(picked) >= wanted:
                break
            chunk = order[start : start + 128]
            usable = screen(victim, chunk, require_correct)
            picked += [c for c, ok in zip(chunk, usable) if ok][: wanted - len(picked)]
        if len(picked) < wanted:
            log.warning("%s: only %d of %d source clips available in the %s split", where, len(picked), wanted, split)
        chosen += picked
    return chosen


def attack_jobs(sources: list[SourceClip], victim: Victim, targets: list[str] | None,
                targets_per_source: int | None, seed: int, where: Path) -> list[Job]:
    """Each source clip with its targets (every other class of a classifier when ``targets`` is ``None``), less the
    pairs whose target is too long for the clip."""
    rng = np.random.default_rng([seed, 99])
    jobs: list[Job] = []
    for clip in sources:
        if targets is not None:
            pool = targets
        elif isinstance(victim, ClassifierVictim):
            pool = [label for label in victim.labels if not label.startswith("_")]
        else:
            raise ValueError("a speech-recognition victim needs target phrases: set targets")
        pool = [t for t in pool if victim.normalise_target(t) != clip.label]
        if targets_per_source is not None and targets_per_source < len(pool):
            keep = sorted(rng.choice(len(pool), targets_per_source, replace=False).tolist())
            pool = [pool[i] for i in keep]
        jobs += [(clip, target, None) for target in pool]
    if jobs:
        lengths = torch.tensor([clip.num_samples for clip, _, _ in jobs], device=victim.device)
        feasible = victim.feasible(lengths, victim.encode([t for _, t, _ in jobs])).tolist()
        dropped = len(jobs) - sum(feasible)
        if dropped:
            log.warning("%s: left out %d source/target pairs whose target is too long for the clip", where, dropped)
        jobs = [job for job, ok in zip(jobs, feasible) if ok]
    return jobs


def matched_jobs(match: Path) -> tuple[list[SourceClip], list[Job]]:
    """Clean clips of the matched set, and one job per successful adversarial example there (at its SNR)."""
    rows = manifest.read_manifest(match, check_audio=False)
    clips = {}
    for row in rows:
        if row["kind"] == "clean" and row["source_id"] not in clips:
            clips[row["source_id"]] = SourceClip(row["source_id"], str(match / row["path"]), row["split"],
                                                 row["source_split"], row["source_label"], row["group"],
                                                 row["num_samples"])
    jobs = [(clips[r["source_id"]], r["target"], r["snr_db"]) for r in rows
            if r["kind"] == "adversarial" and r["success"] and r["source_id"] in clips]
    return list(clips.values()), jobs


def normal_jobs(clips: list[SourceClip], attacks: list[Job], normal_per_adversarial: float, stratify: Stratify,
                seed: int, where: Path) -> list[Job]:
    """Clean clips per split: the attacked ones first, then others of the split, up to the wanted count."""
    normals: list[Job] = []
    for index, split in enumerate(SPLITS):
        attacked = list({clip.id: clip for clip, _, _ in attacks if clip.split == split}.values())
        wanted = math.ceil(normal_per_adversarial * sum(clip.split == split for clip, _, _ in attacks))
        used = {clip.id for clip in attacked}
        others = [c for c in clips if c.split == split and c.id not in used]
        others = order_clips(others, stratify, np.random.default_rng([seed, index, 7]))
        picked = (attacked + others)[:wanted]
        if len(picked) < wanted:
            log.warning("%s: only %d clean clips for %d wanted in the %s split", where, len(picked), wanted, split)
        normals += [(clip, "", None) for clip in picked]
    return normals


def numbered_jobs(attacks: list[Job], normals: list[Job], attack_kind: str, batch_size: int) -> list[dict[str, Any]]:
    """The plan's rows: an id, path and the source's details per clip, and a batch number; batches hold clips of
    one kind and similar length, which wastes little on padding."""
    jobs: list[dict[str, Any]] = []
    for kind, items in ((attack_kind, attacks), ("clean", normals)):
        prefix = {"clean": "clean", "adversarial": "adv", "noise": "noise"}[kind]
        for number, (clip, target, snr) in enumerate(items):
            job_id = f"{prefix}-{number:06d}"
            jobs.append({
                "id": job_id, "kind": kind, "path": f"{kind}/{clip.split}/{job_id}.wav", "split": clip.split,
                "source_id": clip.id, "source_path": clip.path, "source_split": clip.source_split,
                "source_label": clip.label, "group": clip.group, "num_samples": clip.num_samples,
                "target": target, "snr_db": snr,
            })
    batch = 0
    for kind in (attack_kind, "clean"):
        of_kind = sorted((j for j in jobs if j["kind"] == kind), key=lambda j: (j["num_samples"], j["id"]))
        for start in range(0, len(of_kind), batch_size):
            for job in of_kind[start : start + batch_size]:
                job["batch"] = batch
            batch += 1
    return jobs


@torch.no_grad()
def screen(victim: Victim, clips: list[SourceClip], require_correct: bool) -> list[bool]:
    """Which clips may be attacked: not silent where the victim listens and, if asked, recognised correctly.

    A clip whose peak is below ``SILENT_PEAK`` has no signal to measure distortion against (its dB_x and
    SNR would be meaningless), so it is never chosen.
    """
    waves = [victim.prepare(read_audio(clip.path, AudioPolicy())) for clip in clips]
    audible = [bool(w.abs().max() >= SILENT_PEAK) for w in waves]
    if not require_correct:
        return audible
    lengths = torch.tensor([w.numel() for w in waves])
    batch = pad_sequence(waves, batch_first=True)
    predictions = victim.predict(quantize(batch).to(victim.device), lengths.to(victim.device))
    return [ok and p == clip.label for ok, p, clip in zip(audible, predictions, clips)]
