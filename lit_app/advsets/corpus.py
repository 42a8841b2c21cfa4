"""Building an adversarial corpus on disk: plan, generate in resumable shards, merge.

1. **Plan** (once, stored in ``plan.json``): pick source clips per split (balanced over classes or
   durations, optionally only those the victim gets right), pair each with its targets, add clean clips
   for balance, and cut the jobs into fixed batches. Every later step reads the stored plan, so resumed
   runs and shards on other devices agree on what to make.
2. **Generate**: shard ``s`` of ``n`` takes batches ``s, s + n, ...`` and skips those already done. For
   each batch it writes the WAVs (atomically), then appends the batch's rows to its own progress file
   ``progress/shard-<s>-of-<n>.jsonl`` in one write: a row exists only for a clip that is fully on disk.
   A killed run therefore loses at most the batches in flight, and a rerun redoes exactly those.
3. **Merge**: when every planned clip has a row, the rows (deduplicated, in plan order) become
   ``manifest.csv``, which is validated; ``README.md`` (the dataset card) is written and ``corpus.json``
   marked complete.

A batch's results depend only on the plan, the seed and the batch number, never on the sharding.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch.nn.utils.rnn import pad_sequence

from lit_app import folders
from lit_app.advsets import card, manifest
from lit_app.advsets import plan as planning
from lit_app.advsets.plan import Stratify
from lit_app.attacks.base import Attack
from lit_app.attacks.victims import Victim, checkpoint_sha256, load_victim
from lit_app.audio.io import STRICT, AudioPolicy, read_audio, write_wav
from lit_app.audio.pcm import quantize
from lit_app.base import LitAppDataModule
from lit_app.checkpoints import load_module
from lit_app.device import resolve_device
from lit_app.splits import SPLITS

log = logging.getLogger(__name__)

KIND = "adversarial"
PLAN_FILE = "plan.json"
PROGRESS_FOLDER = "progress"


def batch_seed(seed: int, batch: int) -> int:
    """A seed per batch that depends on nothing but the corpus seed and the batch number."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{batch}".encode()).digest()[:8], "little") % 2**63


def describe_source(source: LitAppDataModule | None) -> dict[str, Any] | None:
    if source is None:
        return None
    out: dict[str, Any] = {"class": f"{type(source).__module__}.{type(source).__qualname__}", "root": str(source.root)}
    for name in ("task", "corpus", "splits"):
        if hasattr(source, name):
            out[name] = getattr(source, name)
    return out


class AdversarialCorpus:
    """A corpus of normal and adversarial clips made by one attack against one victim; builds or resumes itself.

    Args:
        root: folder of the corpus.
        victim: checkpoint of the victim (``lit-app fit`` output); its SHA-256 is part of the corpus identity.
        attack: the attack (see :mod:`lit_app.attacks`).
        source: data module of the clean corpus to attack (a ``KWSDataModule`` or an ``ASRDataModule``); its
            corpus is built first if the module is set up to synthesise it.
        match: instead of ``source``, the folder of a finished adversarial corpus: its successful adversarial
            examples are remade by this attack from the same clean clips, with the same targets and each at
            the SNR of its counterpart (the noise control).
        sources_per_split: clean clips to attack in each detection split (``train``, ``val``, ``test``).
        source_labels: attack only clips of these classes (e.g. ``[yes]``); all when ``None``.
        targets: target classes or phrases; for a classifier, every other keyword when ``None``.
        targets_per_source: targets drawn per clip; all of ``targets`` when ``None``.
        stratify: spread the chosen clips evenly over ``label`` (classes), ``duration`` (short, medium and
            long thirds), or ``none``.
        require_correct: attack only clips the victim recognises correctly (exact transcript for a recogniser).
        normal_per_adversarial: clean clips per planned adversarial clip in each split: the attacked clips,
            then other clips of the same split.
        batch_size: clips per attack call.
        seed: every random choice of the plan and the attacks follows from it.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda:N``.
        show_progress: show a progress bar while generating.
    """

    def __init__(
        self,
        root: str,
        victim: str,
        attack: Attack,
        source: LitAppDataModule | None = None,
        match: str | None = None,
        sources_per_split: dict[str, int] = {"train": 40, "val": 10, "test": 10},
        source_labels: list[str] | None = None,
        targets: list[str] | None = None,
        targets_per_source: int | None = None,
        stratify: Stratify = "label",
        require_correct: bool = False,
        normal_per_adversarial: float = 1.0,
        batch_size: int = 32,
        seed: int = 0,
        device: str = "auto",
        show_progress: bool = True,
    ) -> None:
        if (source is None) == (match is None):
            raise ValueError("give either a source data module or a corpus to match, not both or neither")
        unknown = set(sources_per_split) - set(SPLITS)
        if unknown:
            raise ValueError(f"sources_per_split has unknown splits {sorted(unknown)}; use {SPLITS}")
        self.root = Path(root)
        self.victim = victim
        self.attack = attack
        self.source = source
        self.match = match
        self.sources_per_split = dict(sources_per_split)
        self.source_labels = list(source_labels) if source_labels else None
        self.targets = list(targets) if targets else None
        self.targets_per_source = targets_per_source
        self.stratify = stratify
        self.require_correct = require_correct
        self.normal_per_adversarial = normal_per_adversarial
        self.batch_size = batch_size
        self.seed = seed
        self.device = device
        self.show_progress = show_progress
        self._victim_sha256: str | None = None

    # ---- identity --------------------------------------------------------------------------------------------

    @property
    def victim_sha256(self) -> str:
        if self._victim_sha256 is None:
            if not Path(self.victim).is_file():
                raise FileNotFoundError(f"{self.victim}: victim checkpoint not found. Train the victim first "
                                        "(`lit-app fit ...`) or fix the path.")
            self._victim_sha256 = checkpoint_sha256(self.victim)
        return self._victim_sha256

    def settings(self) -> dict[str, Any]:
        """Everything the corpus content depends on; a folder built with other settings is refused."""
        return {
            "victim_sha256": self.victim_sha256,
            "attack": self.attack.name,
            "attack_class": f"{type(self.attack).__module__}.{type(self.attack).__qualname__}",
            "attack_settings": self.attack.settings(),
            "source": describe_source(self.source),
            "match": str(self.match) if self.match else None,
            "match_manifest_sha256": self.match_manifest_sha256(),
            "sources_per_split": self.sources_per_split,
            "source_labels": self.source_labels,
            "targets": self.targets,
            "targets_per_source": self.targets_per_source,
            "stratify": self.stratify,
            "require_correct": self.require_correct,
            "normal_per_adversarial": self.normal_per_adversarial,
            "batch_size": self.batch_size,
            "seed": self.seed,
        }

    def match_manifest_sha256(self) -> str | None:
        """Hash of the matched corpus's manifest: a noise control is stale once its counterpart changes.

        Raises:
            FileNotFoundError: the matched corpus is not finished yet.
        """
        if self.match is None:
            return None
        path = Path(self.match) / manifest.MANIFEST_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{self.root} remakes the examples of {self.match}, which is not finished: build "
                                    "that corpus first (list it before this one)")
        return hashlib.sha256(path.read_bytes()).hexdigest()

    def is_complete(self) -> bool:
        info = folders.read_corpus_info(self.root)
        if not (info and info.get("complete")):
            return False
        try:
            return info.get("settings") == self.settings()
        except FileNotFoundError:  # the matched corpus is gone or unfinished
            return False

    # ---- the whole build -------------------------------------------------------------------------------------

    def build(self, shard: int = 0, num_shards: int = 1, device: str | torch.device | None = None) -> bool:
        """Plan if needed, generate shard ``shard`` of ``num_shards``, and merge when every shard is done.

        Returns:
            Whether the corpus is complete.

        Raises:
            lit_app.data.synth.folders.CorpusError: ``root`` holds another corpus or one built with other settings.
        """
        if not 0 <= shard < num_shards:
            raise ValueError(f"shard must be in [0, {num_shards}), got {shard}")
        if self.start():
            return True
        if num_shards == 1:
            self.sweep_leftovers()
        self.generate(shard, num_shards, device)
        return self.merge()

    # ---- locking: one writer per shard; planning, sweeping and merging only while nobody else writes -----------

    def folder_lock(self) -> folders.FolderLock:
        """Held shared by every generating shard, exclusively to plan, sweep leftovers and merge."""
        return folders.FolderLock(self.root / folders.LOCK_FILE, str(self.root))

    def shard_lock(self, shard: int, num_shards: int) -> folders.FolderLock:
        """Held exclusively by the run generating this shard: a second run of the same shard is refused."""
        return folders.FolderLock(self.root / f".shard-{shard:03d}-of-{num_shards:03d}.lock",
                                  f"{self.root} (shard {shard} of {num_shards})")

    def sweep_leftovers(self) -> None:
        """Delete leftovers of killed writes, unless another run writes here now (its temporary files are live)."""
        try:
            with self.folder_lock():
                folders.remove_partial_files(self.root)
        except folders.FolderBusyError:
            log.info("%s: another run is writing here; leftovers of earlier runs are kept for now", self.root)

    def start(self, device: str | torch.device | None = None) -> bool:
        """Claim the folder and make the plan if there is none; returns whether the corpus is already complete.

        Raises:
            lit_app.folders.FolderBusyError: another run is planning or merging this corpus right now.
        """
        settings = self.settings()
        info = folders.read_corpus_info(self.root)
        if info and info.get("settings") == settings:
            if info.get("complete"):
                return True
            if (self.root / PLAN_FILE).is_file():
                return False  # planned already: shards of a running build need no lock
        # Load the victim before touching the folder: a bad checkpoint must not leave a claimed, empty corpus.
        victim = load_victim(self.victim, resolve_device(str(device or self.device)))
        with self.folder_lock():
            if folders.claim_folder(self.root, KIND, settings):
                return True
            if not (self.root / PLAN_FILE).is_file():
                folders.write_json_atomic(self.root / PLAN_FILE, {"jobs": self.plan(victim)})
        return False

    # ---- planning --------------------------------------------------------------------------------------------

    def read_plan(self) -> list[dict[str, Any]]:
        path = self.root / PLAN_FILE
        try:
            return json.loads(path.read_text())["jobs"]
        except (OSError, json.JSONDecodeError, KeyError) as err:
            raise folders.CorpusError(f"{path}: missing or unreadable plan ({err}). Delete {self.root} and build again.") from err

    def plan(self, victim: Victim) -> list[dict[str, Any]]:
        """Every clip to make, with its batch number; deterministic for the seed (and the victim's answers)."""
        if self.match is not None:
            clips, attacks = planning.matched_jobs(Path(self.match))
        else:
            self.source.prepare_data()
            clips = self.source.attack_sources()
            chosen = planning.choose_sources(clips, victim, self.sources_per_split, self.source_labels, self.stratify,
                                             self.require_correct, self.seed, self.root)
            attacks = planning.attack_jobs(chosen, victim, self.targets, self.targets_per_source, self.seed, self.root)
        if not attacks:
            raise folders.CorpusError(f"{self.root}: the plan has no clips to attack; check sources_per_split, "
                                      "source_labels and targets (and require_correct against a weak victim)")
        normals = planning.normal_jobs(clips, attacks, self.normal_per_adversarial, self.stratify, self.seed, self.root)
        return planning.numbered_jobs(attacks, normals, self.attack_kind, self.batch_size)

    @property
    def attack_kind(self) -> str:
        return "noise" if self.attack.name == "noise" else "adversarial"

    # ---- generation ------------------------------------------------------------------------------------------

    def progress_file(self, shard: int, num_shards: int) -> Path:
        return self.root / PROGRESS_FOLDER / f"shard-{shard:03d}-of-{num_shards:03d}.jsonl"

    def read_progress(self) -> dict[str, dict[str, Any]]:
        """Rows recorded by every shard so far, by clip id (a clip made twice keeps its last row)."""
        rows: dict[str, dict[str, Any]] = {}
        for path in sorted((self.root / PROGRESS_FOLDER).glob("shard-*.jsonl")):
            lines = path.read_text().split("\n")
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    if number == len(lines):  # the torn last line of a killed run: its batch is redone
                        continue
                    raise folders.CorpusError(f"{path}, line {number}: corrupt progress record ({err}); delete "
                                            f"{self.root} and build again") from err
                rows[row["id"]] = row
        return rows

    def generate(self, shard: int = 0, num_shards: int = 1, device: str | torch.device | None = None) -> int:
        """Make the missing clips of this shard's batches; returns how many batches were made.

        Raises:
            lit_app.folders.FolderBusyError: another run is generating the same shard, or merging.
        """
        folder_lock = self.folder_lock().acquire(exclusive=False)
        try:
            with self.shard_lock(shard, num_shards):
                return self._generate(shard, num_shards, device)
        finally:
            folder_lock.release()

    def _generate(self, shard: int, num_shards: int, device: str | torch.device | None) -> int:
        jobs = self.read_plan()
        done = {i for i, row in self.read_progress().items() if (self.root / row["path"]).is_file()}
        batches: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for job in jobs:
            batches[job["batch"]].append(job)
        todo = [b for b in sorted(batches) if b % num_shards == shard and any(j["id"] not in done for j in batches[b])]
        if not todo:
            return 0
        victim = load_victim(self.victim, resolve_device(str(device or self.device)))
        progress_path = self.progress_file(shard, num_shards)
        progress_path.parent.mkdir(parents=True, exist_ok=True)
        drop_torn_line(progress_path)
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        hidden = not self.show_progress or bool(os.environ.get("CI"))
        with Progress(*columns, disable=hidden) as bar:
            task = bar.add_task(f"{self.attack.name} -> {self.root.name} (shard {shard}/{num_shards})", total=len(todo))
            for number in todo:
                rows = self.make_batch(victim, batches[number], batch_seed(self.seed, number))
                append_rows(progress_path, rows)
                bar.advance(task)
                successes = [r["success"] for r in rows if r["kind"] != "clean"]
                log.info("%s: batch %d done (%d clips%s)", self.root, number, len(rows),
                         f", {sum(successes)}/{len(successes)} successful" if successes else "")
        return len(todo)

    def make_batch(self, victim: Victim, jobs: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
        """Attack (or copy, for clean clips) one batch and write its WAVs; returns the manifest rows."""
        policy = STRICT if self.match is not None else AudioPolicy()
        waves = [victim.prepare(read_audio(job["source_path"], policy)) for job in jobs]
        lengths = torch.tensor([w.numel() for w in waves])
        batch = pad_sequence(waves, batch_first=True)
        attack_name, settings = "", ""
        if jobs[0]["kind"] == "clean":
            clips = quantize(batch)
            predictions = victim.predict(clips.to(victim.device), lengths.to(victim.device))
            results = [{"prediction": p} for p in predictions]
        else:
            conditions = {"snr_db": [j["snr_db"] for j in jobs]} if jobs[0]["snr_db"] is not None else {}
            output = self.attack(victim, batch, lengths, [j["target"] for j in jobs], seed=seed, **conditions)
            clips = output.adversarial
            results = [r.as_dict() for r in output.results]
            attack_name, settings = self.attack.name, json.dumps(self.attack.settings(), sort_keys=True)
        rows = []
        for job, clip, length, result in zip(jobs, clips, lengths.tolist(), results):
            write_wav(self.root / job["path"], clip[:length])
            row = {key: job[key] for key in ("id", "path", "kind", "split", "source_id", "source_path", "source_split",
                                             "source_label", "group", "target")}
            row.update(
                label="adversarial" if job["kind"] == "adversarial" else "normal",
                attack=attack_name, attack_settings=settings, seed=seed if attack_name else "",
                victim=str(self.victim), victim_sha256=self.victim_sha256, num_samples=length,
                prediction=result["prediction"], success=result.get("success", ""), db_x=result.get("db_x", ""),
                snr_db=result.get("snr_db", ""), linf=result.get("linf", ""), queries=result.get("queries", ""),
                iterations=result.get("iterations", ""),
            )
            if job["kind"] != "clean":
                row["target"] = result["target"]
            rows.append(row)
        return rows

    # ---- merging ---------------------------------------------------------------------------------------------

    def missing(self) -> list[str]:
        """Planned clips without a row or a file yet."""
        progress = self.read_progress()
        return [job["id"] for job in self.read_plan()
                if job["id"] not in progress or not (self.root / progress[job["id"]]["path"]).is_file()]

    def merge(self, others_writing_ok: bool = True) -> bool:
        """Write the manifest and dataset card once every shard is done; returns whether the corpus is complete.

        Args:
            others_writing_ok: while other shards still write here, return ``False`` (they merge when they finish)
                instead of raising.

        Raises:
            lit_app.folders.FolderBusyError: other runs write here and ``others_writing_ok`` is false.
        """
        if self.is_complete():
            return True
        try:
            with self.folder_lock():
                return self._merge()
        except folders.FolderBusyError:
            if not others_writing_ok:
                raise
            log.info("%s: other shards are still writing; the last one to finish merges", self.root)
            return False

    def _merge(self) -> bool:
        missing = self.missing()
        if missing:
            log.info("%s: %d clips still to make (e.g. %s)", self.root, len(missing), ", ".join(missing[:3]))
            return False
        progress = self.read_progress()
        rows = [progress[job["id"]] for job in self.read_plan()]
        manifest.write_manifest(self.root, rows)
        rows = manifest.read_manifest(self.root)
        summary = card.summarise(rows)
        described = describe_victim(self.victim)
        card.write_card(self.root, self.settings(), summary, str(self.victim), described)
        folders.remove_partial_files(self.root)
        folders.finish_folder(self.root, {"summary": summary, "victim": str(self.victim), "victim_description": described})
        return True


def describe_victim(checkpoint: str) -> str:
    """The victim's one-line description (its module's ``describe()``), or ``""`` for a module without one."""
    module = load_module(checkpoint, map_location="cpu")
    return module.describe() if hasattr(module, "describe") else ""


def drop_torn_line(path: Path) -> None:
    """Cut a half-written last line (a run killed mid-write) so new rows start on a line of their own."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)


def append_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append rows as JSON lines in one write, flushed to disk before the next batch starts."""
    text = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)
    with open(path, "a") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
