"""One writer per output folder: a second run of the same corpus is refused while the first is alive, merging waits
for every writer, a merge that leaves clips missing fails, and a killed claim's leftover does not block a resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from lit_app.advsets import manifest
from lit_app.advsets.generate import main
from lit_app.folders import FolderBusyError, FolderLock, claim_folder
from tests.test_adversarial_corpus import REPO, kws_victim, start_generation, write_config  # noqa: F401  (a fixture)


def one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_two_writers_at_once_the_second_is_refused_and_the_first_finishes(
        tmp_path, tiny_keywords, kws_victim, capsys):  # noqa: F811
    root = tmp_path / "corpus"
    config = write_config(tmp_path / "configs", root, tiny_keywords, kws_victim)
    first, _ = start_generation(config, root, rows=1)
    try:
        first.send_signal(signal.SIGSTOP)  # alive and holding its locks, mid-generation: as slow as can be
        temporary = root / "adversarial" / "train" / ".adv-live.wav.x.part"
        temporary.write_bytes(b"RIFF")  # stands for the first writer's file in flight
        for stage in ("all", "merge"):
            with pytest.raises(SystemExit) as second:
                main(["--config", str(config), "--stage", stage])
            assert second.value.code == 1
            line = one_error_line(capsys)
            assert line.startswith("lit-app generate: error: ")
            assert str(root) in line and f"pid {first.pid}" in line and "in use by another run" in line
        assert temporary.exists(), "a refused run deleted a live run's temporary file"
        temporary.unlink()
    finally:
        first.send_signal(signal.SIGCONT)
    assert first.wait(timeout=300) == 0, first.stderr.read().decode()[-2000:]
    rows = manifest.read_manifest(root)
    plan = json.loads((root / "plan.json").read_text())["jobs"]
    assert [r["id"] for r in rows] == [job["id"] for job in plan]
    main(["--config", str(config), "--stage", "merge"])  # complete: exits normally


def test_merge_with_missing_clips_exits_non_zero(tmp_path, tiny_keywords, kws_victim, capsys):  # noqa: F811
    config = write_config(tmp_path / "configs", tmp_path / "corpus", tiny_keywords, kws_victim)
    main(["--config", str(config), "--stage", "plan"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as merge:
        main(["--config", str(config), "--stage", "merge"])
    assert merge.value.code == 1
    err = capsys.readouterr().err
    assert "clips are still missing" in err and str(tmp_path / "corpus") in err


def test_shard_locks_name_the_holder_and_free_on_release(tmp_path):
    lock = FolderLock(tmp_path / ".shard-000-of-002.lock", f"{tmp_path} (shard 0 of 2)").acquire()
    holder = subprocess.run(
        [sys.executable, "-c", "import sys; from lit_app.folders import FolderLock, FolderBusyError\n"
         "try:\n FolderLock(sys.argv[1], 'x').acquire()\nexcept FolderBusyError as e:\n print(e)",
         str(tmp_path / ".shard-000-of-002.lock")], env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, check=True).stdout
    assert f"pid {os.getpid()}" in holder
    lock.release()
    FolderLock(tmp_path / ".shard-000-of-002.lock", "x").acquire().release()
    shared = FolderLock(tmp_path / ".lock", str(tmp_path)).acquire(exclusive=False)
    with pytest.raises(FolderBusyError):  # flock is per open file: the same process is refused too
        FolderLock(tmp_path / ".lock", str(tmp_path)).acquire()
    shared.release()


def test_a_killed_claim_does_not_block_the_resume(tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    (root / ".corpus.json.part").write_text('{"kind": "adv')  # killed while writing corpus.json
    assert claim_folder(root, "adversarial", {"seed": 0}) is False
    (root / "stray.txt").write_text("x")
    other = tmp_path / "other"
    other.mkdir()
    (other / "stray.txt").write_text("x")
    with pytest.raises(Exception, match=r"not empty and has no corpus.json \(it holds stray.txt\)"):
        claim_folder(other, "adversarial", {"seed": 0})
