"""The white-box victim: a DeepSpeech speech recogniser trained with CTC, waveform in, characters out."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from torch import nn
from torchmetrics.text import CharErrorRate, WordErrorRate

from lit_app.audio.features import MFCC, LogMelSpectrogram
from lit_app.base import LitAppModule
from lit_app.nets.deepspeech import DeepSpeech, DeepSpeech2, MozillaDeepSpeech, RNNType
from lit_app.nets.feature_norm import standardise_per_clip
from lit_app.text import Alphabet, BeamSearchDecoder, ctc_frames_needed, greedy_decode

STAGES = ("train", "val", "test")
Architecture = Literal["deepspeech", "deepspeech2", "mozilla_0.1"]
#: What Mozilla DeepSpeech 0.1 hears: 26 MFCCs from 26 mel filters over 25 ms windows, every second 10 ms frame
#: (the same frames as a 20 ms hop), with 9 frames of context on each side.
MOZILLA_0_1_FRONT_END = {"features": "mfcc", "n_mfcc": 26, "n_mels": 26, "win_ms": 25.0, "hop_ms": 20.0, "context": 9}


class DeepSpeechModule(LitAppModule):
    """DeepSpeech on 16 kHz waveforms ``[batch, samples]`` with their lengths; returns character log-probs.

    The feature front-end is inside the model and every setting (alphabet, features, sizes) is a
    hyper-parameter, so :func:`lit_app.checkpoints.load_module` rebuilds the whole victim from the
    checkpoint path, and an attack can back-propagate from the CTC loss to the waveform.

    Utterances whose transcript needs more CTC frames than the audio yields cannot be aligned (their loss
    is infinite); they are reported by name, counted in ``<stage>/ctc_infeasible`` and left out of the loss.

    Args:
        labels: output symbols, blank first (the data module passes its alphabet); a-z, space, apostrophe
            by default.
        architecture: ``deepspeech`` (Hannun et al. 2014's layout), ``mozilla_0.1`` (Mozilla DeepSpeech 0.1, the
            victim Carlini & Wagner attacked; it needs the front-end of :data:`MOZILLA_0_1_FRONT_END` and always
            has an LSTM) or ``deepspeech2`` (convolutions + RNN stack). Checkpoints record it, so every result
            can say which victim it used (:meth:`describe`).
        features: ``mfcc`` or ``logmel`` front-end.
        n_mfcc: cepstral coefficients (``mfcc`` features).
        n_mels: mel filters.
        win_ms: analysis window in milliseconds.
        hop_ms: frame hop in milliseconds (20 ms halves the frames, and the cost, of a 10 ms hop).
        sample_rate: input sample rate.
        feature_norm: ``utterance`` standardises each coefficient per utterance; ``none`` leaves them.
        n_hidden: hidden width (2048 in the paper).
        context: frames of context on each side (``deepspeech``).
        rnn_type: recurrent cell: ``rnn`` (the paper's), ``gru`` or ``lstm`` (``mozilla_0.1``: always ``lstm``).
        rnn_layers: bidirectional layers (``deepspeech2``).
        conv_channels: convolution channels (``deepspeech2``).
        dropout: dropout of the hidden layers.
        relu_clip: clipping value of the clipped ReLU.
        num_examples: decoded examples logged per validation and test epoch.
        test_beam_size: when positive, test also decodes with a beam search of this width (needs
            flashlight-text) and logs ``test/wer_beam`` and ``test/cer_beam``.
        **optimizer_settings: optimiser and schedule settings of :class:`~lit_app.base.LitAppModule`.
    """

    def __init__(
        self,
        labels: list[str] | None = None,
        architecture: Architecture = "deepspeech",
        features: Literal["mfcc", "logmel"] = "mfcc",
        n_mfcc: int = 26,
        n_mels: int = 40,
        win_ms: float = 25.0,
        hop_ms: float = 10.0,
        sample_rate: int = 16000,
        feature_norm: Literal["utterance", "none"] = "utterance",
        n_hidden: int = 2048,
        context: int = 5,
        rnn_type: RNNType = "rnn",
        rnn_layers: int = 3,
        conv_channels: int = 32,
        dropout: float = 0.0,
        relu_clip: float = 20.0,
        num_examples: int = 4,
        test_beam_size: int = 0,
        **optimizer_settings: Any,
    ) -> None:
        super().__init__(**optimizer_settings)
        self.save_hyperparameters()
        self.alphabet = Alphabet(labels) if labels else Alphabet()
        self.hparams["labels"] = list(self.alphabet.symbols)
        if architecture == "mozilla_0.1":
            settings = dict(features=features, n_mfcc=n_mfcc, n_mels=n_mels, win_ms=win_ms, hop_ms=hop_ms, context=context)
            wrong = {k: v for k, v in MOZILLA_0_1_FRONT_END.items() if settings[k] != v}
            if wrong:
                raise ValueError(
                    "architecture 'mozilla_0.1' hears what Mozilla DeepSpeech 0.1 heard; set "
                    + ", ".join(f"{k}: {v} (got {settings[k]})" for k, v in wrong.items())
                    + " in the model's init_args (configs/asr/mozilla_demo.yaml has them), or choose 'deepspeech'"
                )
            rnn_type = "lstm"
            self.hparams["rnn_type"] = rnn_type
        self.sample_rate = sample_rate
        if features == "mfcc":
            self.front_end: nn.Module = MFCC(sample_rate, n_mfcc=n_mfcc, n_mels=n_mels, win_ms=win_ms, hop_ms=hop_ms)
            n_features = n_mfcc
        else:
            self.front_end = LogMelSpectrogram(sample_rate, n_mels=n_mels, win_ms=win_ms, hop_ms=hop_ms)
            n_features = n_mels
        self.hop_length = round(hop_ms * sample_rate / 1000)
        self.feature_norm = feature_norm
        n_classes = len(self.alphabet)
        if architecture == "deepspeech":
            self.net: nn.Module = DeepSpeech(n_features, n_classes, n_hidden, context, rnn_type, dropout, relu_clip)
        elif architecture == "mozilla_0.1":
            self.net = MozillaDeepSpeech(n_features, n_classes, n_hidden, context, dropout, relu_clip)
        elif architecture == "deepspeech2":
            self.net = DeepSpeech2(n_features, n_classes, n_hidden, rnn_layers, rnn_type, conv_channels, dropout, relu_clip)
        else:
            raise ValueError(f"unknown architecture {architecture!r}; choose 'deepspeech', 'mozilla_0.1' or 'deepspeech2'")
        self.num_examples = num_examples
        self.test_beam_size = test_beam_size
        self._beam: BeamSearchDecoder | None = None
        # Keys carry a suffix: a ModuleDict cannot hold a key named like an nn.Module method ("train").
        self.metrics = nn.ModuleDict({f"{stage}_wer": WordErrorRate() for stage in STAGES})
        self.metrics.update({f"{stage}_cer": CharErrorRate() for stage in STAGES})
        self.test_wer_beam = WordErrorRate()
        self.test_cer_beam = CharErrorRate()
        self.infeasible: dict[str, str] = {}
        self._examples: list[tuple[str, str, str]] = []

    # ---- the model as a function, for training and for attacks -------------------------------------------------

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Feature frames of clips of ``lengths`` samples (centred framing)."""
        return torch.div(lengths, self.hop_length, rounding_mode="floor") + 1

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """CTC output frames of clips of ``lengths`` samples."""
        return self.net.output_lengths(self.frame_lengths(lengths))

    def features(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``[batch, frames, features]`` of ``[batch, samples]`` waveforms (padding frames zeroed)."""
        # Features stay in float32 under mixed precision: log-mel energies lose too much in half precision.
        with torch.autocast(device_type=waveforms.device.type, enabled=False):
            feats = self.front_end(waveforms.float()).transpose(1, 2)
            frames = self.frame_lengths(lengths).clamp(max=feats.shape[1])
            if self.feature_norm == "utterance":
                # Per-utterance statistics: independent of the clip's level and of the other clips in the batch,
                # which an attack optimising one clip at a time needs.
                return standardise_per_clip(feats, frames, frames_dim=1)
            mask = torch.arange(feats.shape[1], device=feats.device).unsqueeze(0) < frames.unsqueeze(1)
            return feats * mask.unsqueeze(-1)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Character log-probabilities ``[batch, frames, symbols]`` and valid frames per clip.

        Args:
            waveforms: ``[batch, samples]`` float waveforms in [-1, 1] at ``sample_rate``.
            lengths: valid samples of each clip; all of them when omitted.
        """
        if waveforms.ndim == 1:
            waveforms = waveforms.unsqueeze(0)
        if lengths is None:
            lengths = torch.full((waveforms.shape[0],), waveforms.shape[1], device=waveforms.device)
        lengths = lengths.to(waveforms.device)
        frames = self.frame_lengths(lengths)
        return self.net(self.features(waveforms, lengths), frames)

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded target indices ``[batch, max_length]`` and lengths for transcripts (e.g. attack targets)."""
        encoded = [self.alphabet.encode(text, f"text {i}") for i, text in enumerate(texts)]
        lengths = torch.tensor([len(e) for e in encoded])
        targets = torch.zeros(len(encoded), max(int(lengths.max()), 1), dtype=torch.long)
        for row, e in enumerate(encoded):
            targets[row, : len(e)] = e
        return targets.to(self.device), lengths.to(self.device)

    def ctc_loss(
        self,
        log_probs: torch.Tensor,
        output_lengths: torch.Tensor,
        targets: torch.Tensor,
        target_lengths: torch.Tensor,
        reduction: Literal["mean", "sum", "none"] = "mean",
    ) -> torch.Tensor:
        """CTC loss of model output against padded targets (float32, blank index 0)."""
        return F.ctc_loss(
            log_probs.float().transpose(0, 1),
            targets,
            output_lengths,
            target_lengths,
            blank=0,
            reduction=reduction,
            zero_infinity=False,
        )

    @torch.no_grad()
    def transcribe(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None) -> list[str]:
        """Greedy transcripts of ``[batch, samples]`` waveforms."""
        log_probs, frames = self(waveforms, lengths)
        return greedy_decode(log_probs, frames, self.alphabet)

    def describe(self) -> str:
        """Which victim this is, in one line for dataset cards and results (from the hyper-parameters alone), e.g.
        ``DeepSpeech mozilla_0.1 (lstm, 256 hidden; 26 mfcc every 20 ms over 25 ms, context 9)``."""
        h = self.hparams
        recurrent = f"{h.rnn_layers} x {h.rnn_type}" if h.architecture == "deepspeech2" else h.rnn_type
        n_features = h.n_mfcc if h.features == "mfcc" else h.n_mels
        context = "" if h.architecture == "deepspeech2" else f", context {h.context}"
        return (f"DeepSpeech {h.architecture} ({recurrent}, {h.n_hidden} hidden; {n_features} {h.features} every "
                f"{h.hop_ms:g} ms over {h.win_ms:g} ms{context})")

    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameters of the network, per layer group and in total."""
        counts = {name: sum(p.numel() for p in child.parameters()) for name, child in self.net.named_children()}
        counts = {name: n for name, n in counts.items() if n}
        counts["total"] = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return counts

    # ---- Lightning hooks ----------------------------------------------------------------------------------------

    def _shared_step(self, batch: Any, batch_idx: int, stage: str) -> tuple[torch.Tensor | None, list[str], list[str], Any]:
        waveforms, lengths, targets, target_lengths, ids = batch
        log_probs, frames = self(waveforms, lengths)
        needed = ctc_frames_needed(targets, target_lengths).to(frames.device)
        feasible = frames >= needed
        if not bool(feasible.all()):
            self._report_infeasible(ids, lengths, frames, needed, feasible, stage)
        self.log(f"{stage}/ctc_infeasible", float((~feasible).sum()), reduce_fx="sum", on_step=False, on_epoch=True,
                 batch_size=len(ids))
        loss = None
        if bool(feasible.any()):
            loss = self.ctc_loss(log_probs[feasible], frames[feasible], targets[feasible], target_lengths[feasible])
            self.log(f"{stage}/loss", loss, prog_bar=stage != "test", batch_size=int(feasible.sum()),
                     on_step=stage == "train", on_epoch=True, sync_dist=stage != "train")
        hypotheses = greedy_decode(log_probs.detach(), frames, self.alphabet)
        references = [self.alphabet.decode(t[:n]) for t, n in zip(targets.cpu(), target_lengths.tolist())]
        wer, cer = self.metrics[f"{stage}_wer"], self.metrics[f"{stage}_cer"]
        wer(hypotheses, references)
        cer(hypotheses, references)
        on_step = stage == "train"
        self.log(f"{stage}/wer", wer, on_step=on_step, on_epoch=True, batch_size=len(ids))
        self.log(f"{stage}/cer", cer, on_step=on_step, on_epoch=True, batch_size=len(ids), prog_bar=True)
        if stage != "train" and len(self._examples) < self.num_examples and batch_idx % self._example_stride(stage) == 0:
            # Batches come sorted by duration: one example from every few batches spans short to long clips.
            self._examples.append((ids[0], references[0], hypotheses[0]))
        return loss, hypotheses, references, (log_probs, frames)

    def _example_stride(self, stage: str) -> int:
        counts = self.trainer.num_val_batches if stage == "val" else self.trainer.num_test_batches
        total = sum(counts) if counts else 0
        if not math.isfinite(total):  # loaders without a length
            return 1
        return max(1, int(total) // max(self.num_examples, 1))

    def _report_infeasible(self, ids: Any, lengths: torch.Tensor, frames: torch.Tensor, needed: torch.Tensor,
                           feasible: torch.Tensor, stage: str) -> None:
        for i in torch.nonzero(~feasible).flatten().tolist():
            item = ids[i]
            if item in self.infeasible:
                continue
            seconds = int(lengths[i]) / self.sample_rate
            message = (
                f"{item}: transcript needs at least {int(needed[i])} CTC frames but {seconds:.2f} s of audio gives "
                f"{int(frames[i])}; it cannot be aligned, so it is left out of the {stage} loss. Check that the "
                "transcript belongs to this clip, or drop the utterance (e.g. a lower max_chars_per_second)."
            )
            self.infeasible[item] = message
            rank_zero_warn(message)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        loss, *_ = self._shared_step(batch, batch_idx, "train")
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._shared_step(batch, batch_idx, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        _, _, references, (log_probs, frames) = self._shared_step(batch, batch_idx, "test")
        if self.test_beam_size > 0:
            if self._beam is None:
                self._beam = BeamSearchDecoder(self.alphabet, beam_size=self.test_beam_size)
            hypotheses = self._beam(log_probs, frames)
            self.test_wer_beam(hypotheses, references)
            self.test_cer_beam(hypotheses, references)
            self.log("test/wer_beam", self.test_wer_beam, batch_size=len(references))
            self.log("test/cer_beam", self.test_cer_beam, batch_size=len(references))

    def predict_step(self, batch: Any, batch_idx: int) -> list[str]:
        waveforms, lengths = batch[0], batch[1]
        log_probs, frames = self(waveforms, lengths)
        return greedy_decode(log_probs, frames, self.alphabet)

    def on_fit_start(self) -> None:
        counts = self.parameter_counts()
        gradient_mb = counts["total"] * 4 / 2**20
        parts = ", ".join(f"{name} {n:,}" for name, n in counts.items() if name != "total")
        rank_zero_info(
            f"DeepSpeechModule ({self.hparams.architecture}, {self.hparams.n_hidden} hidden): {counts['total']:,} "
            f"parameters ({parts}); {gradient_mb:.1f} MB of float32 gradients per step"
        )
        for logger in self.loggers:
            logger.log_hyperparams({"num_parameters": counts["total"], "gradient_mb": round(gradient_mb, 3)})

    def on_validation_epoch_start(self) -> None:
        self._examples = []

    def on_test_epoch_start(self) -> None:
        self._examples = []

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self._log_examples("val")

    def on_test_epoch_end(self) -> None:
        self._log_examples("test")

    def on_fit_end(self) -> None:
        if self.infeasible:
            rank_zero_warn(
                f"{len(self.infeasible)} utterances could not be aligned by CTC and were left out of the loss "
                f"(first: {next(iter(self.infeasible))})."
            )

    def _log_examples(self, stage: str) -> None:
        if not self._examples or not self.trainer.is_global_zero:
            return
        rows = [[item, reference, hypothesis] for item, reference, hypothesis in self._examples]
        wandb_loggers = [logger for logger in self.loggers if isinstance(logger, WandbLogger)]
        for logger in wandb_loggers:
            logger.log_table(f"{stage}/examples", columns=["item", "reference", "hypothesis"], data=rows,
                             step=self.global_step)
        lines = "\n".join(f"  {item}\n    ref: {reference}\n    hyp: {hypothesis}" for item, reference, hypothesis in rows)
        rank_zero_info(f"{stage} examples (epoch {self.current_epoch}):\n{lines}")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("hyper_parameters", {}).get("labels")
        if saved is not None and list(saved) != self.alphabet.symbols:
            raise ValueError(
                f"the checkpoint was trained with the alphabet {saved}, but this run uses {self.alphabet.symbols}. "
                "Use the alphabet the victim was trained with."
            )
