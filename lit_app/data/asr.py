"""LightningDataModule for speech recognition on the synthetic sentence corpus, LibriSpeech or Common Voice."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, NamedTuple

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset, Sampler

from lit_app.audio.io import AudioPolicy, read_audio
from lit_app.audio.voice_augment import VoiceAugment
from lit_app.base import LitAppDataModule
from lit_app.data import commonvoice, librispeech
from lit_app.data.source_clip import SourceClip
from lit_app.data.synth import sentences
from lit_app.data.utterances import Utterance, partition, with_durations
from lit_app.splits import SPLITS, STAGE_SPLITS
from lit_app.text import DEFAULT_SYMBOLS, Alphabet

log = logging.getLogger(__name__)

Corpus = Literal["synthetic", "librispeech", "commonvoice"]
DEFAULT_SPLITS: dict[str, dict[str, list[str]]] = {
    "synthetic": {"train": ["train"], "val": ["validation"], "test": ["testing"]},
    "librispeech": {"train": ["train-clean-100"], "val": ["dev-clean"], "test": ["test-clean"]},
    "commonvoice": {"train": ["train"], "val": ["dev"], "test": ["test"]},
}


class ASRBatch(NamedTuple):
    """A padded batch: waveforms ``[batch, samples]`` with valid ``lengths``, padded ``targets``
    ``[batch, max_chars]`` with ``target_lengths``, and the utterance ``ids``."""

    waveforms: torch.Tensor
    lengths: torch.Tensor
    targets: torch.Tensor
    target_lengths: torch.Tensor
    ids: list[str]


class UtteranceDataset(Dataset):
    """Reads each clip on access (16 kHz mono float32); transcripts are encoded up front.

    Args:
        utterances: the clips, with normalised transcripts.
        alphabet: the model's symbols.
        policy: audio format policy (resampling, channels).
    """

    def __init__(self, utterances: list[Utterance], alphabet: Alphabet, policy: AudioPolicy) -> None:
        self.utterances = utterances
        self.targets = [alphabet.encode(u.transcript, u.id) for u in utterances]
        self.policy = policy

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        utterance = self.utterances[index]
        return read_audio(utterance.path, self.policy), self.targets[index], utterance.id


def collate(items: list[tuple[torch.Tensor, torch.Tensor, str]]) -> ASRBatch:
    lengths = torch.tensor([audio.numel() for audio, _, _ in items])
    target_lengths = torch.tensor([target.numel() for _, target, _ in items])
    waveforms = pad_sequence([audio for audio, _, _ in items], batch_first=True)
    targets = pad_sequence([target for _, target, _ in items], batch_first=True)
    return ASRBatch(waveforms, lengths, targets, target_lengths, [item_id for _, _, item_id in items])


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of clips of similar duration, so a batch is padded to little more than its shortest clip.

    Clips are sorted by duration and cut into consecutive batches; training shuffles the order of the
    batches (and, within equal durations, nothing else), reseeded every epoch. Under several processes
    each rank takes every ``num_replicas``-th batch (set ``use_distributed_sampler: false`` in the Trainer).

    Args:
        durations: seconds of each clip.
        batch_size: clips per batch.
        shuffle: shuffle the batch order each epoch.
        seed: base seed of that shuffle.
        num_replicas: processes sharing the data.
        rank: this process.
    """

    def __init__(
        self, durations: list[float], batch_size: int, shuffle: bool, seed: int = 0, num_replicas: int = 1, rank: int = 0
    ) -> None:
        order = sorted(range(len(durations)), key=lambda i: (durations[i], i))
        self.batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.batches) / self.num_replicas) if self.num_replicas > 1 else len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        if self.num_replicas > 1:
            # Every rank needs the same number of steps: wrap around to pad the last round.
            total = len(self) * self.num_replicas
            batches = (batches * math.ceil(total / len(batches)))[:total][self.rank :: self.num_replicas]
        return iter(batches)


class ASRDataModule(LitAppDataModule):
    """Transcribed speech for CTC training, in duration-bucketed batches of :class:`ASRBatch`.

    Transcripts are normalised against the alphabet and durations read from file headers once, at setup:
    a bad transcript or audio file stops the run with its name (or is skipped and listed with
    ``skip_bad_items``). Clips are read from disk as batches are drawn, so corpora need not fit in memory.

    Args:
        root: corpus folder: the synthetic corpus, the ``LibriSpeech`` folder, or a Common Voice language folder.
        corpus: ``synthetic``, ``librispeech`` or ``commonvoice``.
        synthesize: when given (synthetic corpus only), build this corpus in ``root`` if missing or unfinished.
        train_splits: splits (folders or listings) to train on; the corpus's usual ones by default.
        val_splits: splits to validate on.
        test_splits: splits to test on.
        batch_size: clips per batch.
        max_seconds: leave out clips longer than this (reported); ``None`` keeps all.
        max_chars_per_second: leave out clips whose transcript is implausibly fast for their duration
            (misaligned transcripts), reported; ``None`` keeps all.
        skip_bad_items: skip (and list) utterances with bad audio or transcripts instead of stopping.
        labels: the alphabet, blank first; passed on to the model.
        seed: seed of the batch order.
        num_workers: DataLoader worker processes that read and resample audio.
        voice_augment: speed, spectral colour, room, codec and vocoder perturbation of training batches (on the
            device; a speed change changes an utterance's length, :meth:`VoiceAugment.utterances`).
    """

    def __init__(
        self,
        root: str = "data/synthetic_sentences",
        corpus: Corpus = "synthetic",
        synthesize: sentences.SyntheticSentenceCorpus | None = None,
        train_splits: list[str] | None = None,
        val_splits: list[str] | None = None,
        test_splits: list[str] | None = None,
        batch_size: int = 32,
        max_seconds: float | None = None,
        max_chars_per_second: float | None = None,
        skip_bad_items: bool = False,
        labels: list[str] = list(DEFAULT_SYMBOLS),
        seed: int = 0,
        num_workers: int = 0,
        voice_augment: VoiceAugment | None = None,
    ) -> None:
        super().__init__()
        if synthesize is not None and corpus != "synthetic":
            raise ValueError(f"synthesize builds the synthetic corpus only; corpus is {corpus!r}. Remove synthesize.")
        self.root = Path(root)
        self.corpus = corpus
        self.synthesize = synthesize
        defaults = DEFAULT_SPLITS[corpus]
        self.splits = {
            "train": list(train_splits or defaults["train"]),
            "val": list(val_splits or defaults["val"]),
            "test": list(test_splits or defaults["test"]),
        }
        self.batch_size = batch_size
        self.max_seconds = max_seconds
        self.max_chars_per_second = max_chars_per_second
        self.skip_bad_items = skip_bad_items
        self.alphabet = Alphabet(labels)
        self.labels = list(self.alphabet.symbols)
        self.seed = seed
        self.num_workers = num_workers
        self.voice_augment = voice_augment
        self.policy = AudioPolicy()
        self.datasets: dict[str, UtteranceDataset] = {}
        self.skipped: list[str] = []
        self.dropped: dict[str, list[str]] = {}

    def prepare_data(self) -> None:
        if self.synthesize is not None:
            self.synthesize.build(self.root)

    def attack_sources(self) -> list[SourceClip]:
        """Every readable utterance of the configured splits whose transcript fits the alphabet (others are
        left out with a warning)."""
        clips = []
        for split in SPLITS:
            for source_split in self.splits[split]:
                utterances, bad = with_durations(self.read_split(source_split), skip_bad=True)
                for message in bad:
                    log.warning("left out of the attack sources: %s", message)
                for u in utterances:
                    try:
                        transcript = self.alphabet.normalise(u.transcript, str(u.path))
                    except ValueError as err:
                        log.warning("left out of the attack sources: %s", err)
                        continue
                    clips.append(SourceClip(u.id, str(u.path), split, source_split, transcript, u.speaker,
                                            round(float(u.seconds or 0.0) * 16000)))
        return clips

    def read_split(self, split: str) -> list[Utterance]:
        """The utterances of one split of the corpus, as listed (not yet checked)."""
        if self.corpus == "synthetic":
            corpus = sentences.read_corpus(self.root)
            if split not in corpus:
                raise ValueError(f"the synthetic corpus has splits {sorted(corpus)}, not {split!r}")
            return corpus[split]
        if self.corpus == "librispeech":
            return librispeech.read_split(self.root, split)
        return commonvoice.read_split(self.root, split)

    def load_set(self, name: str) -> UtteranceDataset:
        """Read, check and filter the utterances of one set (``train``, ``val`` or ``test``)."""
        utterances = [u for split in self.splits[name] for u in self.read_split(split)]

        def normalise(utterance: Utterance) -> Utterance:
            return Utterance(utterance.id, utterance.path, self.alphabet.normalise(utterance.transcript, str(utterance.path)),
                             utterance.speaker, utterance.seconds)

        normalised: list[Utterance] = []
        bad: list[str] = []
        for utterance in utterances:
            try:
                normalised.append(normalise(utterance))
            except ValueError as err:
                if not self.skip_bad_items:
                    raise
                bad.append(str(err))
        timed, bad_audio = with_durations(normalised, self.skip_bad_items)
        bad += bad_audio
        if bad:
            log.warning("skipped %d bad utterances of the %s set:\n  %s", len(bad), name, "\n  ".join(bad))
            self.skipped += bad
        kept, dropped = partition(timed, self.check_length)
        if dropped:
            log.warning("left out %d utterances of the %s set:\n  %s", len(dropped), name, "\n  ".join(dropped[:20]))
            self.dropped[name] = dropped
        if not kept:
            raise RuntimeError(f"{self.root}: the {name} set ({', '.join(self.splits[name])}) has no usable utterances")
        return UtteranceDataset(kept, self.alphabet, self.policy)

    def check_length(self, utterance: Utterance) -> None:
        seconds = float(utterance.seconds or 0.0)
        if self.max_seconds is not None and seconds > self.max_seconds:
            raise ValueError(f"{utterance.path}: {seconds:.1f} s is longer than max_seconds={self.max_seconds}")
        if self.max_chars_per_second is not None and len(utterance.transcript) > self.max_chars_per_second * seconds:
            raise ValueError(
                f"{utterance.path}: {len(utterance.transcript)} characters in {seconds:.2f} s is faster than "
                f"max_chars_per_second={self.max_chars_per_second}; the transcript probably does not match the audio"
            )

    def setup(self, stage: str) -> None:
        for name in STAGE_SPLITS[stage]:
            if name not in self.datasets:
                self.datasets[name] = self.load_set(name)

    def durations(self, name: str) -> list[float]:
        return [float(u.seconds or 0.0) for u in self.datasets[name].utterances]

    def on_after_batch_transfer(self, batch: ASRBatch, dataloader_idx: int) -> ASRBatch:
        if self.voice_augment is None or self.trainer is None or not self.trainer.training:
            return batch
        waveforms, lengths = self.voice_augment.to(batch.waveforms.device).utterances(batch.waveforms, batch.lengths)
        return batch._replace(waveforms=waveforms, lengths=lengths)

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        replicas, rank = 1, 0
        if shuffle and self.trainer is not None:
            replicas, rank = self.trainer.world_size, self.trainer.global_rank
        sampler = BucketBatchSampler(self.durations(name), self.batch_size, shuffle, self.seed, replicas, rank)
        return DataLoader(
            self.datasets[name],
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )
