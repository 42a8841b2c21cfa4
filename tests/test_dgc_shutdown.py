"""The strategies destroy the process group at exit, so that a finished gloo run cannot abort while exiting."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(120)
def test_the_default_group_is_gone_before_the_interpreter_finalises(tmp_path):
    # atexit runs handlers last-registered first: the probe, registered before, runs after the app's handler.
    code = textwrap.dedent(f"""
        import atexit
        import torch.distributed as dist
        from strategies.dgc.shutdown import destroy_process_group_at_exit

        dist.init_process_group("gloo", init_method="file://{tmp_path / 'store'}", rank=0, world_size=1)
        atexit.register(lambda: print("group alive at exit:", dist.is_initialized()))
        destroy_process_group_at_exit()
        first = atexit._ncallbacks()
        destroy_process_group_at_exit()
        print("registered again:", atexit._ncallbacks() != first)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=100,
                          env={"PYTHONPATH": str(REPO), "PATH": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == ["registered again: False", "group alive at exit: False"]


@pytest.mark.timeout(120)
def test_a_spawned_rank_destroys_the_group_before_its_atexit_handlers(tmp_path):
    # A rank started by multiprocessing runs atexit handlers last, after joining threads: the group must be gone
    # before that. The probe is registered after the app's handler, so atexit alone would run it first.
    script = tmp_path / "probe.py"
    script.write_text(textwrap.dedent(f"""
        import atexit
        import multiprocessing
        import torch.distributed as dist
        from strategies.dgc.shutdown import destroy_process_group_at_exit

        def rank():
            dist.init_process_group("gloo", init_method="file://{tmp_path / 'store'}", rank=0, world_size=1)
            destroy_process_group_at_exit()
            atexit.register(lambda: open("{tmp_path / 'seen'}", "w").write(str(dist.is_initialized())))

        if __name__ == "__main__":
            child = multiprocessing.get_context("spawn").Process(target=rank)
            child.start()
            child.join(90)
            print("exit code:", child.exitcode)
    """))
    proc = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=100,
                          env={"PYTHONPATH": str(REPO), "PATH": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == ["exit code: 0"]
    assert (tmp_path / "seen").read_text() == "False"
