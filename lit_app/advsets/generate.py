"""Build adversarial corpora without training anything: one process, or one shard per device or machine.

    python -m lit_app.advsets.generate -c configs/adversarial/blackbox_demo.yaml
    # several GPUs or machines: plan once, then one shard each, then merge
    python -m lit_app.advsets.generate -c CONFIG --stage plan
    CUDA_VISIBLE_DEVICES=k python -m lit_app.advsets.generate -c CONFIG --stage shard --shard k --num_shards N
    python -m lit_app.advsets.generate -c CONFIG --stage merge

The config is the ``data`` section of a detection run (an ``AdversarialDataModule``). A rerun resumes.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

from lit_app.advsets.datamodule import AdversarialDataModule
from lit_app.errors import one_line_errors

PROGRAM = "python -m lit_app.advsets.generate"


def generate(
    data: AdversarialDataModule,
    stage: Literal["all", "plan", "shard", "merge"] = "all",
    shard: int = 0,
    num_shards: int = 1,
    device: str | None = None,
) -> list[str]:
    """Plan, generate and merge every corpus of an adversarial data module.

    Args:
        data: the data module (its ``train_sets`` and ``test_sets`` are built).
        stage: ``all`` (plan, generate ``shard`` of ``num_shards``, merge when complete), ``plan`` (claim the
            folders and write the plans only), ``shard`` (generate one shard, no merge) or ``merge``.
        shard: this process's shard.
        num_shards: shards in all.
        device: ``cpu``, ``cuda``, ``cuda:N``; each corpus's own setting when omitted.

    Returns:
        The folders of corpora left incomplete where this stage should have finished them: every unmerged corpus
        for ``merge``, and for ``all`` with one shard; none for ``plan`` and ``shard``, and for ``all`` with
        several shards (the other shards may still be running).
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    must_finish = stage == "merge" or (stage == "all" and num_shards == 1)
    unfinished = []
    for corpus in data.corpora():
        if corpus.start(device) and stage != "plan":
            print(f"{corpus.root}: complete")
            continue
        if stage in ("all", "shard"):
            corpus.generate(shard, num_shards, device)
        if stage in ("all", "merge"):
            complete = corpus.merge(others_writing_ok=not must_finish)
            print(f"{corpus.root}: {'complete' if complete else f'{len(corpus.missing())} clips still missing'}")
            if must_finish and not complete:
                unfinished.append(str(corpus.root))
    return unfinished


def main(args: list[str] | None = None) -> None:
    """Parse the command line (or ``args``) and run :func:`generate`; exits non-zero when a corpus that this stage
    should have finished is incomplete, and with one line for errors the user can fix."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    from lit_app.base import LitAppDataModule

    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config", action=ActionConfigFile, help="a config with a data section")
    # The data module as a subclass argument, as LightningCLI declares it: only then does jsonargparse resolve
    # corpus and attack files named inside the config (train_sets: [sets/x.yaml]) relative to it.
    parser.add_subclass_arguments(LitAppDataModule, "data", required=True)
    parser.add_function_arguments(generate, skip={"data"})
    config = parser.parse_args(args)
    with one_line_errors(PROGRAM):
        data = parser.instantiate(config).data
        if not isinstance(data, AdversarialDataModule):
            parser.error(f"data must be an AdversarialDataModule, got {type(data).__name__}")
        unfinished = generate(data, config.stage, config.shard, config.num_shards, config.device)
    if unfinished:
        print(f"{PROGRAM}: error: clips are still missing in {', '.join(unfinished)}; run the shards that made no "
              "progress (--stage shard) or rerun without --stage, then merge again", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
