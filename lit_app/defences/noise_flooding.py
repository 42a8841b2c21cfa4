"""Noise flooding: flag clips whose victim output small random noise changes.

Attacks that stop as soon as the victim says the target (C&W with its shrinking bound, the genetic attack)
leave their examples just across a decision boundary, and small random noise pushes most of them back,
far more often than it changes the victim's answer on natural speech (Rajaratnam & Kalita 2018, "Noise
flooding for detecting audio adversarial examples against automatic speech recognition"). The detector
asks the victim about several noisy copies of a clip and scores the share on which the output differs:
for a classifier, whether the class changes; for a recogniser, the character error rate between the two
transcripts, capped at 1.

It learns from no adversarial example, so every attack is an unknown attack to it, and it needs the victim
the clips were made against. The mirror image is its weakness: examples pushed past the boundary with
margin (PGD run to high confidence, or an attacker who averages the victim's loss over noise) survive it.
"""

from __future__ import annotations

import torch
from torchmetrics.functional.text import char_error_rate

from lit_app.attacks.noise import NoiseControl
from lit_app.attacks.victims import CTCVictim, Victim


def disagreement(clean: str, noisy: str, transcripts: bool) -> float:
    """How far the output on a noisy copy is from the output on the clip: 0 (same) to 1."""
    if not transcripts:
        return float(clean != noisy)
    if not clean:
        return float(bool(noisy))
    return min(float(char_error_rate([noisy], [clean])), 1.0)


class NoiseFlooding:
    """Score clips by how easily white noise at ``snr_db`` changes the victim's output.

    A clip is flagged when its score reaches :attr:`threshold`: for a classifier, when the answer changes on at
    least half the copies.

    Args:
        victim: the model the clips may have been made against (:func:`lit_app.attacks.load_victim`).
        snr_db: signal-to-noise ratio of the added noise, per clip over its own samples, dB.
        draws: noisy copies per clip; the score is the mean disagreement over them.
        seed: seed of the noise; a call is deterministic for a seed, batch and device.
    """

    threshold = 0.5

    def __init__(self, victim: Victim, snr_db: float = 15.0, draws: int = 8, seed: int = 0) -> None:
        if draws < 1:
            raise ValueError(f"draws must be at least 1, got {draws}")
        self.victim = victim
        self.snr_db = snr_db
        self.draws = draws
        self.seed = seed
        self.noise = NoiseControl(snr_db)

    @torch.no_grad()
    def score(self, audio: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Scores in [0, 1] of ``[batch, samples]`` clips (zero-padded past ``lengths``), on the CPU."""
        device = self.victim.device
        audio, lengths = audio.to(device, torch.float32), lengths.to(device, torch.long)
        transcripts = isinstance(self.victim, CTCVictim)
        clean = self.victim.predict(audio, lengths)
        generator = torch.Generator(device=device).manual_seed(self.seed)
        total = torch.zeros(audio.shape[0], dtype=torch.float64)
        for _ in range(self.draws):
            noisy_audio = self.noise.add_noise(audio, lengths, generator)
            noisy = self.victim.predict(noisy_audio, lengths)
            total += torch.tensor([disagreement(c, n, transcripts) for c, n in zip(clean, noisy)], dtype=torch.float64)
        return (total / self.draws).float()
