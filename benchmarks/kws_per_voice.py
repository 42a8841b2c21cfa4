"""Which voices, and which of their words, a keyword victim gets wrong: accuracy per voice and per (voice, word).

    python benchmarks/kws_per_voice.py runs/engine-transfer-demo/runs/<variant>/without-festival/seed0/checkpoints/best.ckpt \
        data/engine-transfer/held-out-festival [--split testing] [--confusions 10] [--group_by accent|variant|engine]

A held-out engine's test corpus has a few voices, each saying each keyword the same way up to rate, pitch and noise,
so a victim tends to get a (voice, word) pair all right or all wrong: the per-voice table shows where the held-out
accuracy comes from. The voice is the manifest's ``voice`` column in a synthetic corpus, the speaker id of the file
name (``<speaker>_nohash_<n>.wav``) in a Speech Commands folder. Keywords only (not ``_unknown_`` or ``_silence_``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Literal

import torch
from jsonargparse import CLI
from torchmetrics.functional.classification import multiclass_accuracy

from lit_app.attacks import load_victim
from lit_app.attacks.victims import ClassifierVictim
from lit_app.experiments.keyword_answers import in_batches, keyword_clips


def main(checkpoint: str, corpus: str, split: str = "testing", confusions: int = 10,
         group_by: Literal["voice", "accent", "variant", "engine"] = "voice", batch_size: int = 128) -> None:
    """Print the victim's keyword accuracy per voice, per (voice, word), and its most frequent confusions.

    Args:
        checkpoint: a keyword victim's checkpoint.
        corpus: a Speech Commands folder (a held-out engine's test corpus, ``data/engine-transfer/held-out-<engine>``).
        split: the split scored (``training``, ``validation`` or ``testing``).
        confusions: how many of the most frequent (voice, word, answer) confusions to list.
        group_by: ``voice``; or, for espeak-ng, whose hundreds of voices speak a few clips each, their ``accent``
            (``en-gb-x-rp+m3`` -> ``en-gb-x-rp``) or their ``variant`` (-> ``m3``; ``klatt``, ``whisper``,
            ``robosoft``, ...), or a corpus's ``engine`` (a victim's own test voices, engine by engine), and then
            also each word's most frequent answers.
        batch_size: clips per forward pass.
    """
    torch.set_num_threads(1)
    victim = load_victim(checkpoint)
    if not isinstance(victim, ClassifierVictim):
        raise SystemExit(f"{checkpoint}: not a keyword victim")
    root = Path(corpus)
    try:
        data = keyword_clips(root, victim.labels, split)
    except ValueError as error:
        raise SystemExit(str(error)) from None
    for message in data.skipped:
        print(f"skipped: {message}")
    clips, target = data.clips, data.target
    voices = data.voices
    if group_by != "voice":
        voices = [voice.partition(":")[0] if group_by == "engine"
                  else voice.partition("+")[0 if group_by == "accent" else 2] or voice for voice in voices]
    answer = in_batches(victim.logits, data.waveforms, batch_size).argmax(-1)

    def accuracy(rows: list[int]) -> float:
        chosen = torch.tensor(rows)
        return float(multiclass_accuracy(answer[chosen], target[chosen], len(victim.labels), average="micro"))

    by_voice: dict[str, list[int]] = defaultdict(list)
    by_pair: dict[tuple[str, str], list[int]] = defaultdict(list)
    for row, (clip, voice) in enumerate(zip(clips, voices)):
        by_voice[voice].append(row)
        by_pair[(voice, clip.word)].append(row)
    words = sorted({clip.word for clip in clips})
    print(f"{checkpoint} on {root} ({split}): {accuracy(list(range(len(clips)))):.1%} of {len(clips)} keyword clips")
    print("| voice | clips | accuracy | " + " | ".join(words) + " |")
    print("|---" * (len(words) + 3) + "|")
    for voice in sorted(by_voice):
        cells = [f"{accuracy(by_pair[(voice, word)]):.2f}" if by_pair[(voice, word)] else "-" for word in words]
        print(f"| {voice} | {len(by_voice[voice])} | {accuracy(by_voice[voice]):.1%} | " + " | ".join(cells) + " |")
    wrong = Counter((voices[row], clips[row].word, victim.labels[int(answer[row])])
                    for row in range(len(clips)) if answer[row] != target[row])
    print("most frequent confusions (voice, word -> answer, clips): "
          + "; ".join(f"{v}, {w} -> {a}: {n}" for (v, w, a), n in wrong.most_common(confusions)))
    if group_by != "voice":
        for word in words:
            answers = Counter(victim.labels[int(answer[row])] for row in range(len(clips)) if clips[row].word == word)
            print(f"{word}: " + ", ".join(f"{label} {n}" for label, n in answers.most_common(4)))


if __name__ == "__main__":
    CLI(main, as_positional=True)
