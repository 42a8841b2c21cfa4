"""Checkpoints are read weights-only from local files: a URL, pickled code or a class outside the app is refused."""

import functools
import http.server
import sys
import threading

import pytest
import torch

from lit_app.attacks.victims import load_victim
from lit_app.base import CLASS_KEY
from lit_app.checkpoints import CheckpointError, load_module
from lit_app.cli import main
from lit_app.models.kws import KWSModule
from tests.conftest import save_checkpoint


class Payload:
    """Unpickling this creates ``marker``: the proof that a loader ran code from the file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def malicious_checkpoint(path, marker, class_path="lit_app.models.kws.KWSModule"):
    torch.save({"state_dict": {}, CLASS_KEY: class_path, "hyper_parameters": {"x": Payload(marker)}}, path)
    return path


@pytest.fixture
def served(tmp_path):
    """A loopback HTTP server over ``tmp_path/www``; yields its base URL."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def cli_args(tmp_path, ckpt_path):
    return ["test", "--model", "KWSModule", "--data", "KWSDataModule", f"--data.root={tmp_path / 'none'}",
            "--trainer.logger=false", "--trainer.accelerator=cpu", f"--ckpt_path={ckpt_path}"]


def test_cli_refuses_a_served_malicious_checkpoint(served, tmp_path, capsys, monkeypatch):
    www, url = served
    marker = tmp_path / "pwned"
    malicious_checkpoint(www / "evil.ckpt", marker)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(cli_args(tmp_path, f"{url}/evil.ckpt"))
    assert stop.value.code == 1
    assert not marker.exists(), "the checkpoint's payload ran"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lit-app: error: ") and "local files only" in err[0]
    for loader in (load_module, load_victim):
        with pytest.raises(CheckpointError, match="local files only"):
            loader(f"{url}/evil.ckpt")
    assert not marker.exists()


def test_a_local_checkpoint_carrying_code_is_refused_as_such(tmp_path, capsys, monkeypatch):
    marker = tmp_path / "pwned"
    path = malicious_checkpoint(tmp_path / "evil.ckpt", marker)
    with pytest.raises(CheckpointError, match="pickled Python objects besides weights"):
        load_module(path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(cli_args(tmp_path, path))
    assert "pickled Python objects besides weights" in capsys.readouterr().err
    assert not marker.exists()


@pytest.mark.parametrize("class_path", ["this.Anything", "os.system", "lit_app.cli.LitAppCLI", "tests.x.KWSModule"])
def test_only_the_apps_model_classes_are_imported(tmp_path, class_path):
    good = save_checkpoint(KWSModule(), tmp_path / "kws.ckpt")
    checkpoint = torch.load(good, weights_only=True)
    checkpoint[CLASS_KEY] = class_path
    torch.save(checkpoint, tmp_path / "renamed.ckpt")
    before = set(sys.modules)
    with pytest.raises(CheckpointError, match="not one of lit-app's models"):
        load_module(tmp_path / "renamed.ckpt")
    assert set(sys.modules) == before, "a module was imported before the class name was checked"


def test_a_good_local_checkpoint_passes_the_checks(tmp_path):
    # The whole fit -> test path with weights_only=True on the Trainer runs in test_cli_kws.py.
    from lit_app.cli import check_ckpt_path

    good = save_checkpoint(KWSModule(), tmp_path / "kws.ckpt")
    check_ckpt_path(str(good))
    check_ckpt_path("last")  # Lightning's alias for the run's own last checkpoint
    assert isinstance(load_module(good), KWSModule)
