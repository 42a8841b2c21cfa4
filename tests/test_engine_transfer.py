"""`lit-app engine-transfer`: victims trained without an engine, tested on it; resumable; clear errors."""

import csv
import json
from pathlib import Path

import pytest
import yaml

from lit_app.cli import main
from lit_app.data.synth.tts import flite_available
from lit_app.experiments.engine_transfer import (
    BY_ENGINE,
    REFERENCE,
    held_out_overlay,
    keyword_accuracy,
    run_engine_transfer,
)
from tests.conftest import CONFIGS

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not flite_available(), reason="flite is not installed")]

TINY = {
    "seed_everything": 0,
    "trainer": {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 1, "enable_progress_bar": False},
    "data": {"init_args": {"batch_size": 8, "synthesize": {"init_args": {
        "clips_per_keyword": 10, "clips_per_other_word": 1, "noise_seconds": 3.0, "num_workers": 0}}}},
}


def voices_of(root):
    with open(root / "manifest.csv") as handle:
        return {row["voice"].split(":")[0] for row in csv.DictReader(handle)}


def test_each_engine_is_held_out_and_a_rerun_resumes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(yaml.safe_dump(TINY))
    settings = dict(victim_config=str(CONFIGS / "kws" / "demo.yaml"), engines=["espeak", "flite"],
                    variants={"tiny": [str(tiny)]}, held_out_clips_per_keyword=2,
                    trainer_configs=[str(CONFIGS / "trainer" / "cpu.yaml"), str(CONFIGS / "logger" / "csv.yaml")],
                    data_dir="data", out_dir="out")
    rows = run_engine_transfer(**settings)
    assert [(r["held_out"], r["trained_on"]) for r in rows] == [("espeak", ["flite"]), ("flite", ["espeak"])]
    keys = ("own_voices_acc", "own_voices_keyword_acc", "held_out_keyword_acc")
    assert all(0.0 <= r[key] <= 1.0 for r in rows for key in keys)
    assert voices_of(tmp_path / "data" / "flite") == {"flite"} and voices_of(tmp_path / "data" / "held-out-espeak") == {"espeak"}
    # Each run's CSV log in its own folder, so that runs started together cannot share a version folder.
    assert (tmp_path / rows[0]["run"] / "logs" / "lit-app" / "version_0" / "metrics.csv").is_file()
    assert not (tmp_path / "runs" / "csv").exists()
    held_out = json.loads((tmp_path / rows[0]["run"] / "held_out.json").read_text())
    assert held_out["stage"] == "test" and held_out["ckpt_path"].endswith("best.ckpt")
    # A one-engine corpus's own voices by engine are its own voices; each is the other held-out cell's reference.
    assert [r["own_voices_by_engine"].keys() for r in rows] == [{"flite"}, {"espeak"}]
    assert rows[0]["own_voices_by_engine"]["flite"] == pytest.approx(rows[0]["own_voices_keyword_acc"])
    table = (tmp_path / "out" / "engine_transfer.md").read_text()
    assert "| tiny (" in table and "| espeak | flite | 1 |" in table and "| flite | espeak | 1 |" in table
    assert REFERENCE in table
    espeak_row = next(line for line in table.splitlines() if "| espeak | flite |" in line)
    assert espeak_row.endswith(f"| {rows[1]['own_voices_by_engine']['espeak']:.2%} |")
    assert json.loads((tmp_path / "out" / "engine_transfer.json").read_text()) == rows

    def no_training(args):
        raise AssertionError(f"a finished run was run again: {args[:1]}")

    monkeypatch.setattr("lit_app.cli.main", no_training)
    assert run_engine_transfer(**settings) == rows


def test_test_voices_can_train_and_the_validation_voices_are_then_the_own_voices(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(yaml.safe_dump(TINY))
    rows = run_engine_transfer(victim_config=str(CONFIGS / "kws" / "demo.yaml"), engines=["espeak", "flite"],
                               hold_out=["flite"], variants={"tiny": [str(tiny)]}, own_voices="validation",
                               held_out_clips_per_keyword=2,
                               trainer_configs=[str(CONFIGS / "trainer" / "cpu.yaml"), str(CONFIGS / "logger" / "csv.yaml")],
                               data_dir="data", out_dir="out")
    [row] = rows
    assert row["own_voices"] == "validation" and row["run"].endswith("without-flite-test-voices-train/seed0")
    corpus = json.loads((tmp_path / "data" / "espeak-test-voices-train" / "corpus.json").read_text())
    assert corpus["voices"]["testing"] == [] and corpus["clips_per_split"].keys() == {"train", "validation"}
    own = json.loads((tmp_path / row["run"] / "results.json").read_text())
    assert own["stage"] == "validate" and "val/acc_yes" in own["metrics"]
    assert row["own_voices_keyword_acc"] == keyword_accuracy(own["metrics"], "val")
    assert row["own_voices_by_engine"]["espeak"] == pytest.approx(row["own_voices_keyword_acc"])
    table = (tmp_path / "out" / "engine_transfer.md").read_text()
    assert "| flite | espeak (test voices too; own voices: validation) | 1 |" in table and table.rstrip().endswith("| - |")


TINY_ASR = {
    "seed_everything": 0,
    "trainer": {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 1, "enable_progress_bar": False},
    "model": {"init_args": {"n_hidden": 16}},
    "data": {"init_args": {"batch_size": 4, "synthesize": {"init_args": {
        "num_sentences": 24, "val_sentence_fraction": 0.25, "test_sentence_fraction": 0.25, "noise_seconds": 3.0,
        "num_workers": 0}}}},
}


def test_deepspeech_is_held_out_by_sentences_and_scored_by_error_rates(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(yaml.safe_dump(TINY_ASR))
    rows = run_engine_transfer(victim_config=str(CONFIGS / "asr" / "demo.yaml"), engines=["espeak", "flite"],
                               hold_out=["flite"], variants={"tiny": [str(tiny)]}, held_out_sentences=3,
                               trainer_configs=[str(CONFIGS / "trainer" / "cpu.yaml"), str(CONFIGS / "logger" / "csv.yaml")],
                               data_dir="data", out_dir="out")
    assert [(r["held_out"], r["trained_on"]) for r in rows] == [("flite", ["espeak"])]
    assert all(r[key] >= 0.0 for r in rows for key in ("own_voices_cer", "own_voices_wer", "held_out_cer", "held_out_wer"))
    assert voices_of(tmp_path / "data" / "sentences-espeak") == {"espeak"}
    held_out = tmp_path / "data" / "sentences-held-out-flite"
    assert voices_of(held_out) == {"flite"} and json.loads((held_out / "corpus.json").read_text())["clips"] == 3
    assert json.loads((held_out / "corpus.json").read_text())["settings"]["engine_shares"] == "per_voice_shuffled"
    table = (tmp_path / "out" / "engine_transfer.md").read_text()
    assert "held-out engine's CER" in table and "| flite | espeak | 1 |" in table


def test_keyword_accuracy_leaves_out_silence_and_unknown():
    metrics = {"test/acc": 0.5, "test/acc__silence_": 1.0, "test/acc__unknown_": 0.0, "test/acc_yes": 0.75,
               "test/acc_no": 0.25, "test/loss": 3.0}
    assert keyword_accuracy(metrics) == 0.5
    validated = {"val/acc": 0.5, "val/acc__unknown_": 0.0, "val/acc_yes": 1.0, "val/acc_no": 0.5}
    assert keyword_accuracy(validated, "val") == 0.75


def test_bad_settings_are_named(tmp_path):
    with pytest.raises(ValueError, match="two or more of"):
        run_engine_transfer(engines=["espeak", "mbrola"])
    with pytest.raises(ValueError, match="hold_out must name some of engines"):
        run_engine_transfer(engines=["espeak", "flite"], hold_out=["festival"])
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        run_engine_transfer(victim_config=str(tmp_path / "missing.yaml"))
    with pytest.raises(ValueError, match="festival_accented speaks the Speech Commands words only"):
        run_engine_transfer(victim_config=str(CONFIGS / "asr" / "demo.yaml"), engines=["espeak", "festival_accented"])
    detector = str(CONFIGS / "detector" / "paper.yaml")
    with pytest.raises(ValueError, match="KWSModule or lit_app.models.asr.DeepSpeechModule"):
        run_engine_transfer(victim_config=detector)


@pytest.mark.parametrize(("config", "engines"), [("kws/engine_transfer/demo", ["espeak", "flite", "festival"]),
                                                 ("kws/engine_transfer/accented",
                                                  ["espeak", "flite", "festival", "festival_accented"]),
                                                 ("kws/engine_transfer/more_speakers",
                                                  ["espeak", "flite", "festival", "festival_accented",
                                                   "festival_extra", "rhvoice"]),
                                                 ("kws/engine_transfer/mbrola_speakers",
                                                  ["espeak", "flite", "festival", "festival_accented",
                                                   "festival_extra", "rhvoice", "mbrola_accented"]),
                                                 ("kws/engine_transfer/mbrola_british",
                                                  ["espeak", "flite", "festival", "festival_accented",
                                                   "festival_extra", "rhvoice", "mbrola_accented", "mbrola_british"]),
                                                 ("kws/engine_transfer/rule_based_speakers",
                                                  ["espeak", "flite", "festival", "festival_accented",
                                                   "festival_extra", "rhvoice", "mbrola_accented", "gnuspeech", "sam"]),
                                                 ("asr/engine_transfer/demo", ["espeak", "flite", "festival"])])
def test_the_engine_transfer_configs_parse(config, engines, capsys):
    with pytest.raises(SystemExit):
        main(["engine-transfer", "-c", str(CONFIGS / f"{config}.yaml"), "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["engines"] == engines
    for overlays in printed["variants"].values():
        assert all((CONFIGS.parent / path).is_file() for path in overlays)


def test_the_augmentation_overlay_parses(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "-c", str(CONFIGS / "kws" / "demo.yaml"), "-c", str(CONFIGS / "kws" / "overlays" / "voice_augment.yaml"),
              "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["init_args"]["voice_augment"]["class_path"] == "lit_app.audio.voice_augment.VoiceAugment"
    assert printed["data"]["init_args"]["voice_augment"]["init_args"]["vocoder_probability"] == 0.0
    assert printed["model"]["init_args"]["freq_mask"] > 0 and printed["model"]["init_args"]["time_mask"] > 0


@pytest.mark.parametrize(("overlays", "changed"), [(["vocoder"], {"vocoder_probability": 0.3}),
                                                   (["vocoder", "formant_vocoder"],
                                                    {"vocoder_probability": 0.3, "vocoder_formants": 5}),
                                                   (["vocoder", "formant_vocoder", "formant_scale"],
                                                    {"vocoder_probability": 0.3, "vocoder_formants": 5,
                                                     "vocoder_formant_scale_range": [0.8, 1.2]}),
                                                   (["vocoder", "formant_vocoder", "vowel_scale"],
                                                    {"vocoder_probability": 0.3, "vocoder_formants": 5,
                                                     "vocoder_vowel_scale_range": [0.8, 1.25]})])
def test_the_vocoder_overlays_change_the_augmentations_vocoder_only(overlays, changed, capsys):
    augment = str(CONFIGS / "kws" / "overlays" / "voice_augment.yaml")
    with pytest.raises(SystemExit):
        main(["fit", "-c", str(CONFIGS / "kws" / "demo.yaml"), "-c", augment, "--print_config"])
    before = yaml.safe_load(capsys.readouterr().out)["data"]["init_args"]["voice_augment"]["init_args"]
    extra = [arg for name in overlays for arg in ("-c", str(CONFIGS / "kws" / "overlays" / f"{name}.yaml"))]
    with pytest.raises(SystemExit):
        main(["fit", "-c", str(CONFIGS / "kws" / "demo.yaml"), "-c", augment, *extra, "--print_config"])
    after = yaml.safe_load(capsys.readouterr().out)["data"]["init_args"]["voice_augment"]["init_args"]
    assert {key: value for key, value in after.items() if before[key] != value} == changed


def test_the_deepspeech_augmentation_overlay_parses(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "-c", str(CONFIGS / "asr" / "demo.yaml"), "-c", str(CONFIGS / "asr" / "overlays" / "voice_augment.yaml"),
              "--print_config"])
    augment = yaml.safe_load(capsys.readouterr().out)["data"]["init_args"]["voice_augment"]
    assert augment["class_path"] == "lit_app.audio.voice_augment.VoiceAugment"
    assert augment["init_args"]["speed_probability"] == 0.5 and augment["init_args"]["vocoder_probability"] == 0.0


@pytest.mark.parametrize("victim", ["kws", "asr"])
def test_the_held_out_engine_overlays_make_a_test_only_festival_corpus(victim, capsys):
    with pytest.raises(SystemExit):
        main(["test", "-c", str(CONFIGS / victim / "demo.yaml"), "-c", str(CONFIGS / victim / "overlays" /
              "test_on_festival.yaml"), "--print_config"])
    corpus = yaml.safe_load(capsys.readouterr().out)["data"]["init_args"]["synthesize"]["init_args"]
    assert corpus["engines"] == ["festival"] and corpus["test_voice_fraction"] == 1.0
    assert corpus["val_voice_fraction"] == 0.0


@pytest.mark.parametrize("victim", ["kws", "asr"])
def test_the_main_jobs_held_out_overlay_builds_engine_transfers_festival_corpus(victim):
    """The main job's victims and the victims trained without festival are tested on one corpus."""
    overlay = yaml.safe_load((CONFIGS / victim / "overlays" / "test_on_festival.yaml").read_text())["data"]["init_args"]
    size = 100 if victim == "kws" else 200
    task = "keywords" if victim == "kws" else "sentences"
    expected = held_out_overlay(Path("run"), task, "festival", "data/engine-transfer", size)["data"]["init_args"]
    assert overlay == expected


@pytest.mark.parametrize(("overlays", "changed"), [(["batch_norm"], {"batch_norm": True}),
                                                   (["utterance_norm"], {"utterance_norm": "mean"}),
                                                   (["utterance_mean_var"], {"utterance_norm": "mean_var"}),
                                                   (["cepstral_envelope"], {"n_mfcc": 20, "n_mels": 40}),
                                                   (["res8"], {"network": "res8"}),
                                                   (["mixup"], {"mixup_alpha": 0.2}),
                                                   (["res8", "mixstyle"], {"network": "res8", "mixstyle_probability": 0.5})])
def test_the_network_overlays_change_their_settings_only(overlays, changed, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "-c", str(CONFIGS / "kws" / "demo.yaml"), "--print_config"])
    before = yaml.safe_load(capsys.readouterr().out)
    extra = [arg for name in overlays for arg in ("-c", str(CONFIGS / "kws" / "overlays" / f"{name}.yaml"))]
    with pytest.raises(SystemExit):
        main(["fit", "-c", str(CONFIGS / "kws" / "demo.yaml"), *extra, "--print_config"])
    after = yaml.safe_load(capsys.readouterr().out)
    plain, model = before["model"]["init_args"], after["model"]["init_args"]
    assert {key: value for key, value in model.items() if plain.get(key) != value} == changed
    assert after["data"] == before["data"] and after["trainer"] == before["trainer"]


@pytest.mark.parametrize(("victim", "overlay", "epochs"), [("kws", "train_longer", 12), ("kws", "train_24_epochs", 24),
                                                        ("asr", "train_longer", 16)])
def test_the_train_longer_overlays_change_the_epochs_only(victim, overlay, epochs, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "-c", str(CONFIGS / victim / "demo.yaml"), "--print_config"])
    before = yaml.safe_load(capsys.readouterr().out)
    with pytest.raises(SystemExit):
        main(["fit", "-c", str(CONFIGS / victim / "demo.yaml"), "-c", str(CONFIGS / victim / "overlays" / f"{overlay}.yaml"),
              "--print_config"])
    after = yaml.safe_load(capsys.readouterr().out)
    assert after["trainer"]["max_epochs"] == epochs and after["trainer"]["default_root_dir"] == f"runs/{victim}-demo"
    after["trainer"]["max_epochs"] = before["trainer"]["max_epochs"]
    assert after == before


def test_every_victim_is_tested_on_the_outside_engines_too(tmp_path, monkeypatch):
    """The orchestration only: a stand-in for ``lit-app`` writes each test's results where its overlay says."""
    monkeypatch.chdir(tmp_path)
    calls = []

    def fake_lit_app(args):
        calls.append(args)
        overlay = yaml.safe_load(Path([a for a in args if a.endswith(".yaml")][-1]).read_text())
        run = Path(overlay["trainer"]["default_root_dir"]) if "default_root_dir" in overlay["trainer"] else None
        if args[0] == "fit":
            (run / "checkpoints").mkdir(parents=True, exist_ok=True)
            (run / "checkpoints" / "best.ckpt").touch()
            (run / BY_ENGINE).write_text(json.dumps({"flite": 0.9}))
            return
        [results] = [c["init_args"]["path"] for c in overlay["trainer"]["callbacks"] if "path" in c["init_args"]]
        root = overlay["data"]["init_args"]["root"]
        accuracy = {"data/held-out-pico": 0.25, "data/held-out-rhvoice": 0.5}.get(root, 0.75)
        metrics = {"test/acc": accuracy, "test/acc_yes": accuracy, "test/acc_no": accuracy}
        Path(results).write_text(json.dumps({"stage": "test", "metrics": metrics}))

    monkeypatch.setattr("lit_app.cli.main", fake_lit_app)
    [row] = run_engine_transfer(victim_config=str(CONFIGS / "kws" / "demo.yaml"), engines=["espeak", "flite"],
                                hold_out=["espeak"], outside_engines=["pico", "rhvoice"], trainer_configs=[],
                                data_dir="data", out_dir="out")
    assert [args[0] for args in calls] == ["fit", "test", "test", "test", "test"]
    pico = yaml.safe_load((tmp_path / row["run"] / "outside-pico.yaml").read_text())
    assert pico["data"]["init_args"]["synthesize"]["init_args"]["engines"] == ["pico"]
    assert row["pico_keyword_acc"] == 0.25 and row["rhvoice_keyword_acc"] == 0.5 and row["held_out_keyword_acc"] == 0.75
    table = (tmp_path / "out" / "engine_transfer.md").read_text()
    assert "pico (no victim heard it): keywords" in table and table.rstrip().endswith("| 25.00% | 50.00% |")
    run_engine_transfer(victim_config=str(CONFIGS / "kws" / "demo.yaml"), engines=["espeak", "flite"],
                        hold_out=["espeak"], outside_engines=["pico", "rhvoice"], trainer_configs=[], data_dir="data",
                        out_dir="out")
    assert len(calls) == 5  # finished tests are not run again


def test_an_outside_engine_must_be_one_no_victim_hears():
    with pytest.raises(ValueError, match="outside_engines must be engines .* got \\['festival_extra'\\]"):
        run_engine_transfer(engines=["espeak", "flite", "festival"], outside_engines=["pico", "festival_extra"])
