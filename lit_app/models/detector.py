"""The adversarial-example detector: cepstral front-end, feature normalisation and a CNN in one module."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_info
from torchmetrics.classification import BinaryAccuracy, BinaryConfusionMatrix, BinaryROC

from lit_app.advsets.detection import DETECTION_LABELS, DetectionBatch
from lit_app.audio.cepstral import CepstralFeatures, FeatureKind
from lit_app.audio.features import ms_to_samples
from lit_app.audio.noise import add_white_noise_at_snr
from lit_app.base import LitAppModule
from lit_app.metrics.detection import detection_metrics, save_roc_figure
from lit_app.nets.detector_cnn import Backbone, build_backbone
from lit_app.nets.feature_norm import FeatureNorm, MaskedFeatureNorm
from lit_app.run_folder import run_folder

InputMode = Literal["utterance", "blocks"]
Aggregate = Literal["mean", "max", "logit_mean"]


def split_into_blocks(
    audio: torch.Tensor, lengths: torch.Tensor, block: int, hop: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cut ``[batch, samples]`` clips into blocks of ``block`` samples every ``hop`` samples.

    Only blocks that start inside a clip are kept (every clip keeps at least its first block); a block
    running past the clip's end is zero-padded.

    Returns:
        blocks ``[n, block]``, their valid lengths ``[n]`` and the clip each came from ``[n]``.
    """
    longest = int(lengths.max())
    count = max((max(longest - block, 0) + hop - 1) // hop + 1, 1)
    needed = (count - 1) * hop + block
    padded = F.pad(audio[:, :needed], (0, max(needed - audio.shape[1], 0)))
    blocks = padded.unfold(1, block, hop)  # [batch, count, block]
    starts = torch.arange(count, device=audio.device) * hop
    remaining = lengths[:, None] - starts[None, :]
    keep = (remaining > 0) | (starts[None, :] == 0)
    owner = torch.arange(audio.shape[0], device=audio.device)[:, None].expand_as(keep)[keep]
    # Zero what lies past each clip's end: the batch's own padding is zero, but be explicit for callers.
    block_lengths = remaining.clamp(0, block)[keep]
    selected = blocks[keep]
    inside = torch.arange(block, device=audio.device)[None, :] < block_lengths[:, None]
    return selected * inside, block_lengths.clamp(min=1), owner


def aggregate_blocks(block_logits: torch.Tensor, owner: torch.Tensor, batch_size: int, how: Aggregate) -> torch.Tensor:
    """Utterance logits ``[batch, 2]`` from block logits ``[n, 2]`` of the clips in ``owner``.

    ``mean``: mean adversarial probability of the blocks; ``max``: the most adversarial block decides;
    ``logit_mean``: mean log-odds (a product of block likelihood ratios). The result is returned as logits
    whose softmax is the aggregated probability, so every consumer treats both input modes alike.
    """
    log_odds = block_logits[:, 1] - block_logits[:, 0]
    counts = torch.zeros(batch_size, device=block_logits.device, dtype=log_odds.dtype).index_add_(
        0, owner, torch.ones_like(log_odds)
    )
    if how == "logit_mean":
        mean = torch.zeros_like(counts).index_add_(0, owner, log_odds) / counts.clamp(min=1)
        return torch.stack([torch.zeros_like(mean), mean], dim=1)
    probability = torch.sigmoid(log_odds)
    if how == "mean":
        score = torch.zeros_like(counts).index_add_(0, owner, probability) / counts.clamp(min=1)
    elif how == "max":
        score = torch.zeros_like(counts).scatter_reduce(0, owner, probability, reduce="amax", include_self=False)
    else:
        raise ValueError(f"unknown aggregate {how!r}; choose 'mean', 'max' or 'logit_mean'")
    score = score.clamp(1e-7, 1 - 1e-7)
    return torch.stack([torch.log1p(-score), torch.log(score)], dim=1)


THRESHOLD_KEY = "decision_threshold"
DEFAULT_THRESHOLD = 0.5  # checkpoints written before thresholds were stored, and detectors never validated


def decision_threshold(fpr: torch.Tensor, tpr: torch.Tensor, thresholds: torch.Tensor) -> float:
    """The score threshold of the ROC point nearest the equal error rate (false alarms = misses).

    Chosen on validation clips, it is the decision a scored clip gets; the test metrics (accuracy, recall, FPR)
    stay at 0.5, as in the paper.
    """
    if thresholds.numel() == 0 or not torch.isfinite(fpr).all() or not torch.isfinite(tpr).all():
        return DEFAULT_THRESHOLD  # one class only among the validation clips: nothing to balance
    gap = (fpr - (1.0 - tpr)).abs()
    return float(thresholds[int(torch.argmin(gap))].clamp(0.0, 1.0))


class DetectorModule(LitAppModule):
    """Tells normal clips from adversarial ones: ``[batch, samples]`` waveforms to 2-class logits.

    The feature front-end lives inside the model, so a checkpoint alone rebuilds the whole detector and an
    adaptive attacker can differentiate the detector's score with respect to the waveform. Class 1 is
    *adversarial*; :meth:`score` is its probability.

    Two input modes:

    - ``utterance``: the whole clip, its feature map zero-padded or cropped to ``max_frames`` (the ICASSP
      paper: 698 frames of 40 MFCCs at 25 ms / 10 ms);
    - ``blocks``: ``block_ms`` blocks (the follow-up: 512 ms, 32 ms / 16 ms, 20 coefficients, 31 frames),
      each classified on its own during training, their scores aggregated to an utterance score.

    Testing saves a ROC curve and a confusion matrix as PNGs (and to W&B) unless ``test_figures`` is set to
    ``False`` on the module, as the grid does for the hundreds of detectors it tests without W&B.

    Args:
        labels: class names (from the data module); must be ``["normal", "adversarial"]``.
        feature: feature family: ``mfcc``, ``imfcc``, ``lfcc``, ``gfcc``, ``igfcc`` or ``logspec``.
        n_coefficients: cepstral coefficients per frame.
        n_filters: filters in the bank.
        win_ms: analysis window in milliseconds.
        hop_ms: frame hop in milliseconds.
        n_fft: FFT size.
        pre_emphasis: pre-emphasis coefficient (0 disables it).
        f_min: lowest filter edge in Hz.
        f_max: highest filter edge in Hz; Nyquist by default.
        feature_norm: ``global`` (running statistics), ``instance`` (per clip) or ``none`` (the paper).
        backbone: ``paper`` (the published CNN) or ``rescnn`` (residual CNN with masked pooling over time).
        input_mode: ``utterance`` or ``blocks``.
        max_frames: frames per utterance in ``utterance`` mode (longer clips are cropped at the end).
        block_ms: block length in ``blocks`` mode.
        block_hop_ms: hop between blocks (equal to ``block_ms``: no overlap).
        aggregate: block-to-utterance aggregation: ``mean``, ``max`` or ``logit_mean``.
        noise_augment: share of *normal* training clips that get white noise at a random SNR from
            ``noise_snr_db``, still labelled normal: teaches the detector that added noise alone is not an
            attack (what the noise control measures).
        noise_snr_db: SNR range of that noise, dB (the adversarial examples' SNRs are typically 20-50 dB).
        sample_rate: input sample rate.
        **optimizer_settings: optimiser and schedule settings of :class:`~lit_app.base.LitAppModule`.
    """

    def __init__(
        self,
        labels: list[str] | None = None,
        feature: FeatureKind = "mfcc",
        n_coefficients: int = 40,
        n_filters: int = 40,
        win_ms: float = 25.0,
        hop_ms: float = 10.0,
        n_fft: int = 512,
        pre_emphasis: float = 0.97,
        f_min: float = 0.0,
        f_max: float | None = None,
        feature_norm: FeatureNorm = "global",
        backbone: Backbone = "paper",
        input_mode: InputMode = "utterance",
        max_frames: int = 698,
        block_ms: float = 512.0,
        block_hop_ms: float = 512.0,
        aggregate: Aggregate = "mean",
        noise_augment: float = 0.0,
        noise_snr_db: tuple[float, float] = (15.0, 50.0),
        sample_rate: int = 16000,
        **optimizer_settings: Any,
    ) -> None:
        super().__init__(**optimizer_settings)
        if labels is not None and list(labels) != list(DETECTION_LABELS):
            raise ValueError(f"the detector needs labels {list(DETECTION_LABELS)}, got {list(labels)}")
        self.save_hyperparameters()
        self.labels = list(DETECTION_LABELS)
        self.hparams["labels"] = self.labels
        self.front_end = CepstralFeatures(
            feature, sample_rate, n_coefficients, n_filters, win_ms, hop_ms, n_fft, pre_emphasis, f_min, f_max
        )
        self.norm = MaskedFeatureNorm(self.front_end.num_features, feature_norm)
        self.input_mode = input_mode
        self.aggregate = aggregate
        self.noise_augment = noise_augment
        self.noise_snr_db = tuple(noise_snr_db)
        self.block = ms_to_samples(block_ms, sample_rate)
        self.block_hop = ms_to_samples(block_hop_ms, sample_rate)
        self.num_frames = self.front_end.num_frames(self.block) if input_mode == "blocks" else max_frames
        self.net = build_backbone(backbone, self.num_frames, self.front_end.num_features)
        self.train_acc = BinaryAccuracy()
        self.val_metrics = detection_metrics("val/")
        self.val_roc = BinaryROC()
        #: the score from which a clip is called adversarial, chosen on validation clips (see decision_threshold)
        self.threshold = DEFAULT_THRESHOLD
        self.test_metrics = detection_metrics("test/")
        self.test_roc = BinaryROC()
        self.test_confusion = BinaryConfusionMatrix()
        self.test_curve: tuple[torch.Tensor, torch.Tensor] | None = None
        #: every test clip's score, in loader order, after ``test`` (the grid keeps them beside its results)
        self.test_scores: torch.Tensor | None = None
        self._test_batches: list[torch.Tensor] = []
        self.test_figures = True

    # ----------------------------------------------------------------------------------------- inference
    def feature_maps(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised ``[batch, max_frames or block frames, features]`` maps and their valid frame counts."""
        # Zero anything past each clip's end, so no gradient reaches the padding through a clip's last frame.
        inside = torch.arange(audio.shape[1], device=audio.device)[None, :] < lengths.to(audio.device)[:, None]
        features = self.front_end(audio * inside)  # [batch, features, frames]
        valid = self.front_end.num_frames(lengths.to(features.device)).clamp(max=features.shape[-1])
        features = self.norm(features, valid)
        frames = features.shape[-1]
        if frames >= self.num_frames:
            features = features[..., : self.num_frames]
        else:
            features = F.pad(features, (0, self.num_frames - frames))
        return features.transpose(1, 2), valid.clamp(max=self.num_frames)

    def block_logits(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[n, 2]`` of every block of the batch and the clip each block belongs to ``[n]``."""
        blocks, block_lengths, owner = split_into_blocks(audio, lengths, self.block, self.block_hop)
        return self.net(*self.feature_maps(blocks, block_lengths)), owner

    def forward(self, audio: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Utterance logits ``[batch, 2]`` (normal, adversarial) of ``[batch, samples]`` clips."""
        if lengths is None:
            lengths = torch.full((audio.shape[0],), audio.shape[1], dtype=torch.long, device=audio.device)
        if self.input_mode == "blocks":
            logits, owner = self.block_logits(audio, lengths)
            return aggregate_blocks(logits, owner, audio.shape[0], self.aggregate)
        return self.net(*self.feature_maps(audio, lengths))

    def score(self, audio: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Probability that each clip is adversarial, ``[batch]``."""
        return self(audio, lengths).softmax(-1)[:, 1]

    # ------------------------------------------------------------------------------------------ training
    def augment(self, audio: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Noise at a random SNR on a random ``noise_augment`` share of the normal clips of a training batch."""
        chosen = (torch.rand(labels.shape, device=audio.device) < self.noise_augment) & (labels == 0)
        if not bool(chosen.any()):
            return audio
        low, high = self.noise_snr_db
        snr = low + (high - low) * torch.rand(int(chosen.sum()), device=audio.device)
        audio = audio.clone()
        audio[chosen] = add_white_noise_at_snr(audio[chosen], lengths[chosen].to(audio.device), snr)
        return audio

    def _loss_and_logits(self, batch: DetectionBatch) -> tuple[torch.Tensor, torch.Tensor]:
        audio, lengths, labels = batch
        if self.training and self.noise_augment > 0:
            audio = self.augment(audio, lengths, labels)
        if self.input_mode == "blocks":
            # Each block is a training example labelled like its clip (the follow-up paper's set-up).
            logits, owner = self.block_logits(audio, lengths)
            loss = F.cross_entropy(logits, labels[owner])
            return loss, aggregate_blocks(logits.detach(), owner, audio.shape[0], self.aggregate)
        logits = self(audio, lengths)
        return F.cross_entropy(logits, labels), logits

    def training_step(self, batch: DetectionBatch, batch_idx: int) -> torch.Tensor:
        loss, logits = self._loss_and_logits(batch)
        self.train_acc(logits.softmax(-1)[:, 1].detach(), batch[2])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch[2]))
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=len(batch[2]))
        return loss

    def validation_step(self, batch: DetectionBatch, batch_idx: int) -> None:
        loss, logits = self._loss_and_logits(batch)
        self.val_metrics.update(logits.softmax(-1)[:, 1], batch[2])
        self.val_roc.update(logits.softmax(-1)[:, 1], batch[2])
        self.log("val/loss", loss, sync_dist=True, batch_size=len(batch[2]))

    def on_validation_epoch_end(self) -> None:
        values = self.val_metrics.compute()
        self.log_dict({k: values[k] for k in ("val/acc", "val/auroc", "val/eer")}, prog_bar=True)
        self.val_metrics.reset()
        self.threshold = decision_threshold(*self.val_roc.compute())
        self.val_roc.reset()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        # Saved with the weights of the same validation epoch, so a checkpoint's threshold is its own.
        checkpoint[THRESHOLD_KEY] = self.threshold

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.threshold = float(checkpoint.get(THRESHOLD_KEY, DEFAULT_THRESHOLD))

    def test_step(self, batch: DetectionBatch, batch_idx: int) -> None:
        loss, logits = self._loss_and_logits(batch)
        scores = logits.softmax(-1)[:, 1]
        self.test_metrics.update(scores, batch[2])
        self.test_roc.update(scores, batch[2])
        self.test_confusion.update(scores, batch[2])
        self._test_batches.append(scores.detach().float().cpu())
        self.log("test/loss", loss, sync_dist=True, batch_size=len(batch[2]))

    def on_test_epoch_end(self) -> None:
        values = self.test_metrics.compute()
        self.log_dict(values)
        # False-positive rate: how often normal clips (or, on a noise-control set, noisy clips) are flagged.
        self.log("test/fpr", 1.0 - values["test/specificity"])
        fpr, tpr, _ = self.test_roc.compute()
        self.test_curve = (fpr.cpu(), tpr.cpu())
        self.test_scores = torch.cat(self._test_batches) if self._test_batches else torch.empty(0)
        self._test_batches = []
        if self.test_figures and self.trainer.is_global_zero:
            self.save_test_figures()
        for metric in (self.test_metrics, self.test_roc, self.test_confusion):
            metric.reset()

    def save_test_figures(self) -> None:
        """ROC curve and confusion matrix as PNGs in the log folder, and to W&B when it is logging."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        folder = run_folder(self.trainer)
        roc_path = save_roc_figure({"detector": self.test_curve}, folder / "test_roc.png", title="detector ROC")
        fig, _ = self.test_confusion.plot(labels=self.labels)
        confusion_path = folder / "test_confusion_matrix.png"
        fig.savefig(confusion_path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        rank_zero_info(f"ROC curve and confusion matrix saved to {folder}")
        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image("test/roc", [str(roc_path)])
                logger.log_image("test/confusion_matrix", [str(confusion_path)])

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if isinstance(batch, (list, tuple)) and len(batch) >= 2:
            return self.score(batch[0], batch[1])
        return self.score(batch[0] if isinstance(batch, (list, tuple)) else batch)
