"""Fingerprints of a tiny end-to-end pipeline: run it at two commits to show a refactor changed no result.

Builds, in a scratch folder, a tiny synthetic keyword corpus and sentence corpus, seeded untrained victims (a
keyword spotter and a DeepSpeech), and from them a genetic set, a PGD set, its noise control and a C&W set; then
prints one SHA-256 per corpus over every file's path and bytes (``corpus.json``, the dataset card and lock files
left out: they record absolute paths and pids). Equal lines at two commits mean byte-identical corpora. Use the
same ``--out`` at both.

    python benchmarks/pipeline_fingerprint.py --out /tmp/fp        # in each checkout, then diff the outputs
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from jsonargparse import CLI

try:
    from lit_app.advsets.corpus import AdversarialCorpus
except ImportError:  # commits before the adversarial-set package (lit_app/advsets/, 2026-12-05)
    from lit_app.data.adversarial_corpus import AdversarialCorpus
from lit_app.attacks import PGD, CarliniWagner, GeneticAttack, NoiseControl
from lit_app.data.asr import ASRDataModule
from lit_app.data.kws import KWSDataModule
from lit_app.data.synth.keywords import SyntheticKeywordCorpus
from lit_app.data.synth.sentences import SyntheticSentenceCorpus
from lit_app.models.asr import DeepSpeechModule
from lit_app.models.kws import KWSModule

SKIPPED = {"corpus.json", "README.md"}


def fingerprint(root: Path) -> str:
    digest = hashlib.sha256()
    # Lock files hold the last writer's pid.
    for path in sorted(p for p in root.rglob("*")
                       if p.is_file() and p.name not in SKIPPED and not p.name.endswith(".lock")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def save(model: torch.nn.Module, path: Path) -> str:
    import pytorch_lightning as pl

    trainer = pl.Trainer(max_steps=0, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    return str(path)


def main(out: str = "/tmp/lit-app-fingerprint") -> None:
    """Build the tiny pipeline under ``out`` (resumes if it is there) and print ``name sha256`` lines."""
    root = Path(out)
    torch.manual_seed(0)
    keywords = SyntheticKeywordCorpus(clips_per_keyword=8, clips_per_other_word=2, engines=["espeak"],
                                      noise_seconds=3.0, num_workers=0).build(root / "keywords", show_progress=False)
    sentences = SyntheticSentenceCorpus(num_sentences=40, val_sentence_fraction=0.1, test_sentence_fraction=0.1,
                                        engines=["espeak"], noise_seconds=3.0, num_workers=0).build(
        root / "sentences", show_progress=False)
    torch.manual_seed(0)
    kws = save(KWSModule(n_mfcc=20, clip_samples=4000, dropout=0.0), root / "kws.ckpt")
    torch.manual_seed(0)
    asr = save(DeepSpeechModule(n_hidden=32), root / "asr.ckpt")
    common = dict(batch_size=4, device="cpu", show_progress=False)
    kws_source = KWSDataModule(root=str(keywords))
    corpora = {
        "genetic": AdversarialCorpus(str(root / "genetic"), kws, GeneticAttack(population_size=8, max_generations=3),
                                     source=kws_source, sources_per_split={"train": 4, "val": 2, "test": 2},
                                     targets_per_source=1, **common),
        "pgd": AdversarialCorpus(str(root / "pgd"), kws, PGD(epsilon=1024, step_size=128, iterations=5),
                                 source=kws_source, sources_per_split={"train": 4, "val": 2, "test": 2},
                                 targets_per_source=2, **common),
        "pgd_noise": AdversarialCorpus(str(root / "pgd_noise"), kws, NoiseControl(), match=str(root / "pgd"), **common),
        "cw": AdversarialCorpus(str(root / "cw"), asr, CarliniWagner(max_iterations=10, check_every=5),
                                source=ASRDataModule(root=str(sentences)), targets=["stop", "open the door"],
                                sources_per_split={"train": 2, "val": 1, "test": 1}, stratify="duration", **common),
    }
    print(f"keywords {fingerprint(keywords)}")
    print(f"sentences {fingerprint(sentences)}")
    for name, corpus in corpora.items():
        corpus.build()
        print(f"{name} {fingerprint(corpus.root)}")


if __name__ == "__main__":
    CLI(main)
