"""Every victim checkpoint, source corpus and detector a config names is produced by some other config.

A set config that points at a folder no config builds fails only after the victims have trained, deep
inside the main job; these checks catch that in a second.
"""

from functools import cache
from pathlib import Path

import pytest
import yaml

from tests.conftest import CONFIGS


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


@cache
def victim_configs() -> tuple[dict, ...]:
    return tuple(load(p) for folder in ("kws", "asr") for p in sorted((CONFIGS / folder).glob("*.yaml")))


@cache
def built_corpora() -> set[str]:
    """Synthetic corpus folders that a victim config builds (a data module with a ``synthesize`` section)."""
    roots = set()
    for config in victim_configs():
        init = config.get("data", {}).get("init_args", {})
        if "synthesize" in init:
            roots.add(init["root"])
    return roots


@cache
def written_checkpoints() -> set[str]:
    """``best.ckpt`` files that a victim config's RunCheckpoint writes (in ``<default_root_dir>/checkpoints``)."""
    paths = set()
    for config in victim_configs():
        trainer = config.get("trainer", {})
        for callback in trainer.get("callbacks", []):
            if callback["class_path"].endswith("RunCheckpoint"):
                paths.add(f"{trainer['default_root_dir']}/checkpoints/{callback['init_args'].get('filename', 'best')}.ckpt")
    return paths


@cache
def grid_detectors() -> set[str]:
    """Detector checkpoints that the grid configs write, alone, with one of their overlays over the demo grid, or
    stacked as a noise-flooding overlay's ``grid`` composes them: ``<out_dir>/runs/<train>/<feature>/seed<k>``."""
    grids = [load(grid) for grid in sorted((CONFIGS / "detector").glob("grid_*.yaml"))]
    demo = load(CONFIGS / "detector" / "grid_demo.yaml")
    overlays = [*(CONFIGS / "detector" / "grid_overlays").glob("*.yaml"), *(CONFIGS / "detector" / "train_overlays").glob("*.yaml")]
    grids += [{**demo, **load(overlay)} for overlay in sorted(overlays)]
    for flooding in sorted((CONFIGS / "detector" / "noise_flooding_overlays").glob("*.yaml")):  # stacks of overlays
        stack = load(flooding)["grid"]
        composed: dict = {}
        for path in [stack] if isinstance(stack, str) else stack:
            composed.update(load(CONFIGS.parent / path))
        grids.append(composed)
    paths = set()
    for config in grids:
        for train in config["train"]:
            for feature in config["features"]:
                for seed in config["seeds"]:
                    paths.add(f"{config['out_dir']}/runs/{train}/{feature}/seed{seed}/checkpoints/best.ckpt")
    return paths


ATTACK_SETS = sorted((CONFIGS / "adversarial" / "sets").glob("*.yaml"))


@pytest.mark.parametrize("config", ATTACK_SETS, ids=lambda p: p.stem)
def test_attack_sets_name_a_victim_and_a_source_that_configs_produce(config):
    settings = load(config)
    if "source" not in settings:  # a set derived from another corpus (noise at matched SNR)
        return
    root = settings["source"]["init_args"]["root"]
    if root.startswith("data/synthetic"):
        assert root in built_corpora(), f"{config.name}: no config builds {root}"
        assert settings["victim"] in written_checkpoints(), f"{config.name}: no config writes {settings['victim']}"


ADAPTIVE = sorted((CONFIGS / "detector").glob("adaptive_*.yaml"))
ADAPTIVE_OVERLAYS = sorted((CONFIGS / "detector" / "adaptive_overlays").glob("*.yaml"))


@pytest.mark.parametrize("config", ADAPTIVE + ADAPTIVE_OVERLAYS, ids=lambda p: p.stem)
def test_adaptive_configs_name_products_of_other_configs(config):
    base = load(CONFIGS / "detector" / "adaptive_demo.yaml") if config in ADAPTIVE_OVERLAYS else {}
    settings = {**base, **load(config)}
    assert settings["victim"] in written_checkpoints()
    assert settings["source"]["init_args"]["root"] in built_corpora()
    assert settings["detector"] in grid_detectors()


@pytest.mark.parametrize("config", sorted((CONFIGS / "detector").glob("noise_flooding_*.yaml")), ids=lambda p: p.stem)
def test_noise_flooding_configs_fuse_detectors_their_grid_trains(config):
    settings = load(config)
    grid = load(CONFIGS.parent / settings["grid"])
    for pattern in settings["fuse_with"].values():
        assert {pattern.format(seed=seed) for seed in settings["seeds"]} <= grid_detectors()
    assert set(settings["fuse_with"]) <= set(grid["train"])


def test_the_checks_see_the_demo_products():
    assert "data/synthetic_keywords" in built_corpora() and "data/synthetic_sentences_demo" in built_corpora()
    assert {"runs/kws-demo/checkpoints/best.ckpt", "runs/asr-demo/checkpoints/best.ckpt"} <= written_checkpoints()


@pytest.mark.parametrize("scale", ["quick", "demo"])
def test_the_main_job_finds_a_config_for_each_of_its_stages(scale):
    """The main job names its configs by scale; its grid reads exactly the corpora its attack stages build."""
    from tests.main_job import RECIPE, load_report

    demo_corpora = load_report().demo_corpora
    script = (RECIPE / "run.sh").read_text()
    sets = script.split("for set in ", 1)[1].split(";", 1)[0].split()
    wanted = [f"kws/{scale}.yaml", f"asr/{scale}.yaml", *(f"adversarial/sets/{s}_{scale}.yaml" for s in sets),
              *(f"detector/{name}_{scale}.yaml" for name in ("grid", "noise_flooding", "adaptive"))]
    missing = [path for path in wanted if not (CONFIGS / path).is_file()]
    assert len(sets) == 6 and not missing, missing
    built = {load(CONFIGS / "adversarial" / "sets" / f"{s}_{scale}.yaml")["root"] for s in sets}
    assert {str(root) for root in demo_corpora(scale)} == built
