"""Build adversarial corpora without training anything: one process, or one shard per device or machine.

    lit-app generate -c configs/adversarial/blackbox_demo.yaml
    # several GPUs or machines: plan once, then one shard each, then merge
    lit-app generate -c CONFIG --stage plan
    CUDA_VISIBLE_DEVICES=k lit-app generate -c CONFIG --stage shard --shard k --num_shards N
    lit-app generate -c CONFIG --stage merge

(``python -m lit_app.advsets.generate`` takes the same arguments.)
The config is the ``data`` section of a detection run (an ``AdversarialDataModule``). A rerun resumes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from lit_app.advsets.datamodule import AdversarialDataModule
from lit_app.advsets.manifest import read_manifest
from lit_app.advsets.wandb_log import log_attack_sets
from lit_app.base import LitAppDataModule
from lit_app.errors import one_line_errors
from lit_app.folders import CorpusError


def generate(
    data: LitAppDataModule,
    stage: Literal["all", "plan", "shard", "merge"] = "all",
    shard: int = 0,
    num_shards: int = 1,
    device: str | None = None,
    figures_dir: str = "runs/attack-sets",
    example_pairs: int = 3,
    wandb: bool = True,
) -> None:
    """Plan, generate and merge every corpus of an adversarial data module.

    Args:
        data: the data module (its ``train_sets`` and ``test_sets`` are built).
        stage: ``all`` (plan, generate ``shard`` of ``num_shards``, merge when complete), ``plan`` (claim the
            folders and write the plans only), ``shard`` (generate one shard, no merge) or ``merge``.
        shard: this process's shard.
        num_shards: shards in all.
        device: ``cpu``, ``cuda``, ``cuda:N``; each corpus's own setting when omitted.
        figures_dir: where each complete corpus's figures go (``<figures_dir>/<corpus folder name>/``): SNR and dB_x
            histograms and, for ``example_pairs`` examples, spectrograms of the clean clip, the adversarial one
            and the perturbation.
        example_pairs: examples drawn as spectrograms (and logged as audio pairs); 0 for none.
        wandb: also log each complete corpus to an offline W&B run (figures, audio pairs, tables).

    Raises:
        lit_app.folders.CorpusError: a corpus this stage should have finished is incomplete (``merge``, and ``all``
            with one shard; not ``plan``, ``shard``, nor ``all`` with several shards, whose others may still run).
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not isinstance(data, AdversarialDataModule):
        raise TypeError(f"lit-app generate builds an AdversarialDataModule's corpora, not a {type(data).__name__}'s; "
                        "give --data lit_app.advsets.datamodule.AdversarialDataModule or a config with one")
    must_finish = stage == "merge" or (stage == "all" and num_shards == 1)
    complete, unfinished = [], []
    for corpus in data.corpora():
        print(f"{corpus.root}: {stage} ({corpus.attack.name} against {corpus.victim})", flush=True)
        if corpus.start(device) and stage != "plan":
            print(f"{corpus.root}: complete")
            complete.append(corpus)
            continue
        if stage in ("all", "shard"):
            corpus.generate(shard, num_shards, device)
        if stage in ("all", "merge"):
            done = corpus.merge(others_writing_ok=not must_finish)
            print(f"{corpus.root}: {'complete' if done else f'{len(corpus.missing())} clips still missing'}")
            complete += [corpus] if done else []
            if must_finish and not done:
                unfinished.append(str(corpus.root))
    if complete and stage in ("all", "merge"):
        log_attack_sets({c.root: read_manifest(c.root, check_audio=False) for c in complete}, Path(figures_dir), example_pairs, wandb)
    if unfinished:
        raise CorpusError(f"clips are still missing in {', '.join(unfinished)}; run the shards that made no progress "
                          "(--stage shard) or rerun without --stage, then merge again")


PROG = "lit-app generate"


def main(args: list[str] | None = None) -> None:
    """Parse the command line (or ``args``: ``-c``, ``--print_config``, ``--help``) and run :func:`generate`; an
    error the user can fix, missing clips included, ends with one line and exit status 1."""
    from lit_app.experiments.command import run_command

    with one_line_errors(PROG):
        run_command(generate, PROG, args)


if __name__ == "__main__":
    main()
