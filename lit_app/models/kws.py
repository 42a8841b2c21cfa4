"""The keyword-spotting victim: MFCC front-end and cnn-trad-fpool3 as one LightningModule.

By default both are TensorFlow's speech-commands ``conv`` model, the victim Alzantot et al. attacked: 40 MFCCs
from 40 mel bands between 20 Hz and 4 kHz (30 ms windows every 10 ms, 98 frames per second) into
cnn-trad-fpool3 without a second pool. Where we differ and why: ``docs/departures.md``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
import torchaudio.transforms as T
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_info
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from lit_app.audio.features import MFCC
from lit_app.base import LitAppModule
from lit_app.data.vocab import task_labels
from lit_app.nets.feature_norm import standardise_per_clip
from lit_app.nets.kws_cnn import CnnTradFpool3
from lit_app.nets.kws_resnet import Res8
from lit_app.run_folder import run_folder

# What checkpoints written before these settings existed were built with (they were not yet hparams then).
LEGACY_SETTINGS: dict[str, Any] = {"f_max": None, "mel_power": 2.0, "centred_frames": True, "second_pool": True,
                                   "utterance_norm": "none", "n_mels": None}
# The settings that decide the shapes and meaning of the weights: a checkpoint only fits a module built alike.
ARCHITECTURE = ("n_mfcc", "n_mels", "win_ms", "hop_ms", "sample_rate", "clip_samples", "f_min", "f_max", "mel_power",
                "centred_frames", "padding", "batch_norm", "second_pool", "feature_norm", "utterance_norm")


class KWSModule(LitAppModule):
    """Keyword spotter that takes 16 kHz waveforms ``[batch, samples]`` and returns class logits.

    The feature front-end is part of the model, so a checkpoint alone rebuilds the whole victim (labels,
    feature settings, weights) and attacks can differentiate from the logits back to the waveform.

    Args:
        labels: class names in index order (the data module provides them); the 12-label task by default.
        n_mfcc: MFCC coefficients.
        n_mels: mel filters; as many as coefficients by default (TensorFlow's 40 and 40). Fewer coefficients
            than filters keep the spectral envelope and drop the finer detail, pitch harmonics included (not in
            TensorFlow's model).
        win_ms: analysis window in milliseconds.
        hop_ms: frame hop in milliseconds.
        sample_rate: input sample rate.
        clip_samples: input length in samples.
        f_min: lowest mel filter edge in Hz (TensorFlow's 20).
        f_max: highest mel filter edge in Hz (TensorFlow's 4000); ``None``: Nyquist.
        mel_power: what the mel filters sum: 1 spectral magnitudes (TensorFlow's ``Mfcc`` op), 2 power.
        centred_frames: centred frames (101 per second) instead of TensorFlow's (98, window ``k`` starting at
            sample ``k * hop``).
        dropout: dropout after each convolution.
        padding: convolution padding, ``same`` (TensorFlow's model) or ``valid`` (half the compute).
        batch_norm: batch normalisation after each convolution (not in the original network; makes it train
            in far fewer steps).
        second_pool: a 2x2 max-pool after the second convolution too (not in TensorFlow's model).
        feature_norm: standardise each coefficient with running batch statistics before the CNN (not in
            TensorFlow's model, whose training recipe is far longer).
        utterance_norm: each clip's own cepstral mean (``mean``), or mean and variance (``mean_var``), removed
            per coefficient before that: a fixed channel or spectral envelope adds a constant to every frame's
            cepstrum, so another microphone or synthesiser moves these features less (not in TensorFlow's model).
        label_smoothing: label smoothing of the cross-entropy loss.
        freq_mask: SpecAugment in training: widest band of coefficients masked per clip (0: none).
        time_mask: SpecAugment in training: longest run of frames masked per clip (0: none).
        network: ``tf_conv`` (TensorFlow's conv model, the paper's victim) or ``res8`` (Tang & Lin's residual
            network, ours as an option; ``dropout``, ``padding``, ``batch_norm`` and ``second_pool`` are
            TensorFlow's model's and do not apply to it).
        mixup_alpha: mixup in training (Zhang et al. 2018; ours): each clip's features and labels are mixed with
            another clip's of the batch, with a Beta(alpha, alpha) weight (0: none).
        mixstyle_probability: res8 only: chance that a training batch goes through MixStyle (Zhou et al. 2021;
            ours), which mixes the early feature maps' statistics between clips (0: none).
        **optimizer_settings: optimiser and schedule settings of :class:`~lit_app.base.LitAppModule`.
    """

    #: A checkpoint from before the TensorFlow-faithful settings is rebuilt as the network it was.
    legacy_hparams = LEGACY_SETTINGS

    def __init__(
        self,
        labels: list[str] | None = None,
        n_mfcc: int = 40,
        n_mels: int | None = None,
        win_ms: float = 30.0,
        hop_ms: float = 10.0,
        sample_rate: int = 16000,
        clip_samples: int = 16000,
        f_min: float = 20.0,
        f_max: float | None = 4000.0,
        mel_power: float = 1.0,
        centred_frames: bool = False,
        dropout: float = 0.5,
        padding: Literal["same", "valid"] = "same",
        batch_norm: bool = False,
        second_pool: bool = False,
        feature_norm: bool = True,
        utterance_norm: Literal["none", "mean", "mean_var"] = "none",
        label_smoothing: float = 0.0,
        freq_mask: int = 0,
        time_mask: int = 0,
        network: Literal["tf_conv", "res8"] = "tf_conv",
        mixup_alpha: float = 0.0,
        mixstyle_probability: float = 0.0,
        **optimizer_settings: Any,
    ) -> None:
        super().__init__(**optimizer_settings)
        if network not in ("tf_conv", "res8"):
            raise ValueError(f"network must be 'tf_conv' or 'res8', got {network!r}")
        if mixstyle_probability and network != "res8":
            raise ValueError("mixstyle_probability applies to network: res8 only; set it to 0 for tf_conv")
        if mixup_alpha < 0:
            raise ValueError(f"mixup_alpha must be >= 0 (0: no mixup), got {mixup_alpha}")
        if utterance_norm not in ("none", "mean", "mean_var"):
            raise ValueError(f"utterance_norm must be 'none', 'mean' or 'mean_var', got {utterance_norm!r}")
        self.save_hyperparameters()
        self.labels = list(labels) if labels else task_labels("keywords12")
        self.hparams["labels"] = self.labels
        num_classes = len(self.labels)
        self.front_end = MFCC(sample_rate, n_mfcc=n_mfcc, n_mels=n_mels or n_mfcc, win_ms=win_ms, hop_ms=hop_ms, f_min=f_min,
                              f_max=f_max, power=mel_power, centred=centred_frames)
        self.feature_norm = nn.BatchNorm1d(n_mfcc, affine=False) if feature_norm else nn.Identity()
        if network == "res8":
            self.net: nn.Module = Res8(num_classes, mixstyle_probability=mixstyle_probability)
        else:
            self.net = CnnTradFpool3(num_classes, self.front_end.num_frames(clip_samples), n_mfcc, dropout, padding,
                                     batch_norm, second_pool)
        self.label_smoothing = label_smoothing
        self.mixup = torch.distributions.Beta(mixup_alpha, mixup_alpha) if mixup_alpha else None
        # Masks over [batch, coefficients, frames], drawn per clip.
        self.spec_augment = nn.Sequential(
            *([T.FrequencyMasking(freq_mask, iid_masks=True)] if freq_mask else []),
            *([T.TimeMasking(time_mask, iid_masks=True)] if time_mask else []),
        )
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_confusion = MulticlassConfusionMatrix(num_classes)
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_confusion = MulticlassConfusionMatrix(num_classes)

    def describe(self) -> str:
        """Which victim this is, in one line for dataset cards and results (from the hyper-parameters alone), e.g.
        ``keyword spotter: TensorFlow's conv model (12 labels; 40 MFCC, 20-4000 Hz, 30 ms every 10 ms)``."""
        h = self.hparams
        options = [name for name, on in (("batch norm", h.batch_norm), ("valid padding", h.padding == "valid"),
                                         ("second pool", h.second_pool),
                                         ("per-clip cepstral mean removal", h.utterance_norm == "mean"),
                                         ("per-clip cepstral mean and variance removal", h.utterance_norm == "mean_var"))
                   if on]
        name = "TensorFlow's conv model"
        if h.network == "res8":  # the other options are TensorFlow's model's
            name, options = "res8 (Tang & Lin)", [option for option in options if "cepstral" in option]
        network = name + (f" with {', '.join(options)}" if options else "")
        band = f"{h.f_min:g}-{h.f_max:g} Hz" if h.f_max else f"from {h.f_min:g} Hz"
        filters = f" of {h.n_mels} mel bands" if h.n_mels and h.n_mels != h.n_mfcc else ""
        return (f"keyword spotter: {network} ({len(self.labels)} labels; {h.n_mfcc} MFCC{filters}, {band}, "
                f"{h.win_ms:g} ms every {h.hop_ms:g} ms)")

    def features(self, waveform: torch.Tensor) -> torch.Tensor:
        """Normalised MFCCs ``[batch, frames, coefficients]`` of ``[batch, samples]`` waveforms."""
        cepstra = self.front_end(waveform)  # [batch, coefficients, frames]
        if self.hparams.utterance_norm != "none":
            cepstra = standardise_per_clip(cepstra, None, variance=self.hparams.utterance_norm == "mean_var")
        return self.feature_norm(cepstra).transpose(1, 2)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.net(self.features(waveform))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        audio, target = batch
        features = self.features(audio)
        # The masks take [batch, channel, frequency, time]; our features are [batch, frames, coefficients].
        masked = self.spec_augment(features.transpose(1, 2).unsqueeze(1)).squeeze(1).transpose(1, 2)
        weighted_targets = [(1.0, target)]
        if self.mixup is not None:
            weight = self.mixup.sample().item()
            other = torch.randperm(len(target), device=target.device)
            masked = weight * masked + (1 - weight) * masked[other]
            weighted_targets = [(weight, target), (1 - weight, target[other])]
        logits = self.net(masked)
        loss = sum(share * F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
                   for share, labels in weighted_targets)
        self.train_acc(logits, target)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        audio, target = batch
        logits = self(audio)
        self.val_acc(logits, target)
        if self.trainer.state.fn == "validate":
            self.val_confusion(logits, target)
        self.log("val/loss", F.cross_entropy(logits, target), sync_dist=True)
        self.log("val/acc", self.val_acc, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        # Per-label accuracy in a stand-alone ``validate`` run only (a victim measured on its validation voices);
        # during ``fit`` it would add a dozen metrics to every epoch's log.
        if self.trainer.state.fn == "validate":
            self.log_per_label("val", self.val_confusion.compute())
            self.val_confusion.reset()

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        audio, target = batch
        logits = self(audio)
        self.test_acc(logits, target)
        self.test_confusion(logits, target)
        self.log("test/loss", F.cross_entropy(logits, target), sync_dist=True)
        self.log("test/acc", self.test_acc)

    def on_test_epoch_end(self) -> None:
        self.log_per_label("test", self.test_confusion.compute())
        if self.trainer.is_global_zero:
            self.save_confusion_figure()
        self.test_confusion.reset()

    def log_per_label(self, stage: str, confusion: torch.Tensor) -> None:
        """``<stage>/acc_<label>``: the share of each label's clips recognised, from a confusion matrix."""
        per_class = confusion.diag() / confusion.sum(1).clamp(min=1)
        for label, accuracy in zip(self.labels, per_class.tolist()):
            self.log(f"{stage}/acc_{label}", accuracy, sync_dist=False)

    def save_confusion_figure(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, _ = self.test_confusion.plot(labels=self.labels)
        fig.set_size_inches(9, 8)
        folder = run_folder(self.trainer)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "test_confusion_matrix.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        rank_zero_info(f"Confusion matrix saved to {path}")
        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image("test/confusion_matrix", [str(path)])

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        audio = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self(audio).softmax(-1)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        hparams = checkpoint.get("hyper_parameters", {})
        saved = hparams.get("labels")
        if saved is not None and list(saved) != self.labels:
            raise ValueError(
                f"the checkpoint was trained on labels {saved}, but this run uses {self.labels}. "
                "Use the data task the victim was trained on (data.init_args.task)."
            )
        saved_settings = {**LEGACY_SETTINGS, **hparams}
        differ = {k: (saved_settings[k], self.hparams[k]) for k in ARCHITECTURE
                  if k in saved_settings and saved_settings[k] != self.hparams[k]}
        if differ:
            path = getattr(self._trainer, "ckpt_path", None) or "the checkpoint"
            listed = ", ".join(f"{k}={saved!r} (this run: {ours!r})" for k, (saved, ours) in differ.items())
            raise ValueError(
                f"{path} holds a keyword spotter built with {listed}. Set model.init_args to the checkpoint's "
                "values to resume it, or start a new run without --ckpt_path."
            )
