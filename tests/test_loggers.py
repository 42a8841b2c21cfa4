"""The CSV logger of `configs/logger/csv.yaml`: runs started together never share a version folder."""

import csv

from lit_app.loggers import CSVLogger


def test_loggers_created_together_claim_different_versions_and_write_their_own_metrics(tmp_path):
    (tmp_path / "lit-app" / "version_0").mkdir(parents=True)  # an earlier run's
    first, second = CSVLogger(tmp_path, name="lit-app"), CSVLogger(tmp_path, name="lit-app")
    assert (first.version, second.version) == (1, 2)  # both asked before either wrote, as two processes would
    first.log_metrics({"train/loss": 1.0})
    second.log_metrics({"val/acc": 0.5})
    first.save()
    second.save()
    for logger, key in ((first, "train/loss"), (second, "val/acc")):
        with open(f"{logger.log_dir}/metrics.csv") as handle:
            assert list(csv.DictReader(handle))[0].keys() == {"step", key}


def test_a_given_version_is_used_as_it_is(tmp_path):
    assert CSVLogger(tmp_path, name="lit-app", version="mine").version == "mine"
    assert not (tmp_path / "lit-app").exists()
