"""DeepSpeech acoustic models: feature frames in, per-frame character log-probabilities out.

Three networks: DeepSpeech as Hannun et al. (2014) describe it, Mozilla's DeepSpeech 0.1 (the network Carlini &
Wagner attacked), and a DeepSpeech2-style one. All take ``[batch, frames, features]`` and the number of valid frames of each row, and return
``[batch, out_frames, symbols]`` log-probabilities with their valid lengths. Recurrent layers run on
packed sequences, so the padding of a batch never flows into the backward direction of a bidirectional
layer: a clip is recognised the same way alone or next to longer ones.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

RNNType = Literal["rnn", "gru", "lstm"]


class ClippedReLU(nn.Module):
    """``min(max(x, 0), clip)``: DeepSpeech's activation, which keeps the recurrent layer from blowing up."""

    def __init__(self, clip: float = 20.0) -> None:
        super().__init__()
        self.clip = clip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardtanh(x, 0.0, self.clip)


def stack_context(features: torch.Tensor, context: int) -> torch.Tensor:
    """Concatenate each frame with ``context`` frames on either side (zeros beyond the edges).

    ``[batch, frames, features]`` becomes ``[batch, frames, (2 * context + 1) * features]``.
    """
    if context == 0:
        return features
    padded = F.pad(features, (0, 0, context, context))
    windows = padded.unfold(1, 2 * context + 1, 1)  # [batch, frames, features, window]
    return windows.transpose(2, 3).flatten(2)


def make_rnn(rnn_type: RNNType, input_size: int, hidden_size: int, num_layers: int, dropout: float) -> nn.RNNBase:
    if rnn_type == "rnn":
        return nn.RNN(input_size, hidden_size, num_layers, nonlinearity="relu", bidirectional=True, dropout=dropout)
    if rnn_type == "gru":
        return nn.GRU(input_size, hidden_size, num_layers, bidirectional=True, dropout=dropout)
    if rnn_type == "lstm":
        return nn.LSTM(input_size, hidden_size, num_layers, bidirectional=True, dropout=dropout)
    raise ValueError(f"unknown rnn_type {rnn_type!r}; choose 'rnn', 'gru' or 'lstm'")


def run_packed(rnn: nn.RNNBase, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Run a ``[batch, frames, features]`` tensor through ``rnn`` on its valid frames only."""
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, _ = rnn(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out


class DeepSpeech(nn.Module):
    """DeepSpeech of Hannun et al. (2014), "Deep Speech: Scaling up end-to-end speech recognition".

    Frames with ``context`` neighbours on each side -> three fully connected layers with clipped ReLU ->
    one bidirectional recurrent layer -> a fully connected layer on the sum of both directions -> symbols.
    The layout is that of ``torchaudio.models.DeepSpeech`` (so 2048 hidden units give its 30 M parameters
    at 26 x 11 inputs), with packed sequences added for padded batches.

    Args:
        n_features: features per frame (e.g. 26 MFCCs).
        n_classes: output symbols, blank included.
        n_hidden: width of every hidden layer (2048 in the paper).
        context: frames of context on each side (the paper uses 5 to 9).
        rnn_type: ``rnn`` (the paper's ReLU recurrence), ``gru`` or ``lstm``.
        dropout: dropout after each fully connected hidden layer.
        relu_clip: clipping value of the activations.
    """

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        n_hidden: int = 2048,
        context: int = 5,
        rnn_type: RNNType = "rnn",
        dropout: float = 0.0,
        relu_clip: float = 20.0,
    ) -> None:
        super().__init__()
        self.context = context
        self.n_hidden = n_hidden

        def dense(n_in: int) -> nn.Sequential:
            return nn.Sequential(nn.Linear(n_in, n_hidden), ClippedReLU(relu_clip), nn.Dropout(dropout))

        self.fc1 = dense(n_features * (2 * context + 1))
        self.fc2 = dense(n_hidden)
        self.fc3 = dense(n_hidden)
        self.rnn = make_rnn(rnn_type, n_hidden, n_hidden, 1, 0.0)
        self.fc4 = dense(n_hidden)
        self.out = nn.Linear(n_hidden, n_classes)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames for ``lengths`` input frames (one output per input frame)."""
        return lengths

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map ``[batch, frames, features]`` to ``[batch, frames, classes]`` log-probabilities and lengths."""
        x = self.fc3(self.fc2(self.fc1(stack_context(features, self.context))))
        x = run_packed(self.rnn, x, lengths)
        x = self.fc4(x[..., : self.n_hidden] + x[..., self.n_hidden :])
        return F.log_softmax(self.out(x), dim=-1), self.output_lengths(lengths)


class MozillaDeepSpeech(nn.Module):
    """Mozilla DeepSpeech 0.1 (2017), the victim of Carlini & Wagner's "Audio Adversarial Examples" (2018).

    Frames with ``context`` neighbours on each side -> three fully connected layers with clipped ReLU -> one
    bidirectional LSTM -> a fully connected layer with clipped ReLU on *both directions side by side* -> symbols.
    Mozilla's release takes 26 MFCCs every 20 ms (every second 10 ms frame) with 9 frames of context and 2048
    units everywhere (the LSTM has 2048 per direction). Unlike :class:`DeepSpeech`, whose layout sums the two
    directions, the layer after the LSTM sees their concatenation, and the LSTM's forget gates start open
    (bias 1, TensorFlow's ``BasicLSTMCell(forget_bias=1.0)``).

    Args:
        n_features: features per frame (26 MFCCs in the release).
        n_classes: output symbols, blank included.
        n_hidden: width of every hidden layer and of each LSTM direction (2048 in the release).
        context: frames of context on each side (9 in the release).
        dropout: dropout after each fully connected hidden layer and on the LSTM's output (0.05 in training).
        relu_clip: clipping value of the activations (20).
    """

    def __init__(
        self,
        n_features: int = 26,
        n_classes: int = 29,
        n_hidden: int = 2048,
        context: int = 9,
        dropout: float = 0.0,
        relu_clip: float = 20.0,
    ) -> None:
        super().__init__()
        self.context = context

        def dense(n_in: int) -> nn.Sequential:
            return nn.Sequential(nn.Linear(n_in, n_hidden), ClippedReLU(relu_clip), nn.Dropout(dropout))

        self.fc1 = dense(n_features * (2 * context + 1))
        self.fc2 = dense(n_hidden)
        self.fc3 = dense(n_hidden)
        self.lstm = nn.LSTM(n_hidden, n_hidden, bidirectional=True)
        self.lstm_dropout = nn.Dropout(dropout)
        self.fc5 = dense(2 * n_hidden)
        self.out = nn.Linear(n_hidden, n_classes)
        with torch.no_grad():  # PyTorch's gate order is input, forget, cell, output; it has two biases per gate
            for name, bias in self.lstm.named_parameters():
                if name.startswith("bias_ih"):
                    bias[n_hidden : 2 * n_hidden].fill_(1.0)
                elif name.startswith("bias_hh"):
                    bias[n_hidden : 2 * n_hidden].zero_()

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames for ``lengths`` input frames (one output per input frame)."""
        return lengths

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map ``[batch, frames, features]`` to ``[batch, frames, classes]`` log-probabilities and lengths."""
        x = self.fc3(self.fc2(self.fc1(stack_context(features, self.context))))
        x = self.fc5(self.lstm_dropout(run_packed(self.lstm, x, lengths)))
        return F.log_softmax(self.out(x), dim=-1), self.output_lengths(lengths)


class DeepSpeech2(nn.Module):
    """A DeepSpeech2-style network (Amodei et al. 2016): 2-D convolutions, a stack of bidirectional RNNs.

    Conv 32 (41x11, stride 2x2) -> Conv 32 (21x11, stride 2x1) over (frequency, time), each with batch
    normalisation and clipped ReLU, halving the frame rate; then ``rnn_layers`` bidirectional layers
    (directions summed), a fully connected layer and the symbol layer.

    Args:
        n_features: features per frame (e.g. 80 log-mel bands or 26 MFCCs).
        n_classes: output symbols, blank included.
        n_hidden: recurrent and fully connected width.
        rnn_layers: stacked bidirectional layers.
        rnn_type: ``gru`` (as in the paper's best models), ``lstm`` or ``rnn``.
        conv_channels: channels of both convolutions.
        dropout: dropout between layers.
        relu_clip: clipping value of the activations.
    """

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        n_hidden: int = 1024,
        rnn_layers: int = 3,
        rnn_type: RNNType = "gru",
        conv_channels: int = 32,
        dropout: float = 0.0,
        relu_clip: float = 20.0,
    ) -> None:
        super().__init__()
        self.n_hidden = n_hidden
        self.conv = nn.Sequential(
            nn.Conv2d(1, conv_channels, kernel_size=(41, 11), stride=(2, 2), padding=(20, 5)),
            nn.BatchNorm2d(conv_channels),
            ClippedReLU(relu_clip),
            nn.Conv2d(conv_channels, conv_channels, kernel_size=(21, 11), stride=(2, 1), padding=(10, 5)),
            nn.BatchNorm2d(conv_channels),
            ClippedReLU(relu_clip),
        )
        freq = n_features
        for _ in range(2):
            freq = (freq - 1) // 2 + 1
        self.rnns = nn.ModuleList(
            make_rnn(rnn_type, conv_channels * freq if i == 0 else n_hidden, n_hidden, 1, 0.0) for i in range(rnn_layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(n_hidden) for _ in range(rnn_layers))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Sequential(nn.Linear(n_hidden, n_hidden), ClippedReLU(relu_clip), nn.Dropout(dropout))
        self.out = nn.Linear(n_hidden, n_classes)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames for ``lengths`` input frames: the first convolution halves the frame rate."""
        return torch.div(lengths - 1, 2, rounding_mode="floor") + 1

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map ``[batch, frames, features]`` to ``[batch, out_frames, classes]`` log-probabilities and lengths."""
        out_lengths = self.output_lengths(lengths)
        frames = features.shape[1]
        # Zero the padding first: the convolutions would otherwise smear it into the last valid frames.
        valid = torch.arange(frames, device=features.device).unsqueeze(0) < lengths.to(features.device).unsqueeze(1)
        x = self.conv((features * valid.unsqueeze(-1)).transpose(1, 2).unsqueeze(1))  # [batch, ch, freq, time]
        x = x.flatten(1, 2).transpose(1, 2)  # [batch, time, ch * freq]
        for rnn, norm in zip(self.rnns, self.norms):
            y = run_packed(rnn, x, out_lengths)
            x = self.dropout(norm(y[..., : self.n_hidden] + y[..., self.n_hidden :]))
        return F.log_softmax(self.out(self.fc(x)), dim=-1), out_lengths
