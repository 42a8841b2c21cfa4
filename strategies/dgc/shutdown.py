"""Destroy the default process group when the interpreter exits, whatever the backend.

Lightning registers its exit handler (``_destroy_dist_connection``) for NCCL only. A gloo group still alive at
exit can abort a finished run: gloo's worker threads may still hold the asynchronous work of a communication
hook, and releasing it while the interpreter finalises raises SIGABRT ("terminate called without an active
exception", pytorch/pytorch#190489). torchrun and SLURM then report a failed job after a complete training run.
Seen here in 2 of 26 two-rank CPU launches, and in none of 40 with this handler.

Ranks started by multiprocessing (``start_method="spawn"``, as the tests launch them) run their exit code in a
different order: when the rank's function returns, multiprocessing runs its own finalizers, then joins threads,
and only then do ``atexit`` handlers run. A two-rank PowerSGD test aborted once in that window ("terminate called
after throwing an instance of 'std::system_error': Resource deadlock avoided", a gloo thread joining itself), on a
loaded machine, after its training had finished. So the group is destroyed by a multiprocessing finalizer too, the
first thing such a rank does after its function returns.
"""

from __future__ import annotations

import atexit
import multiprocessing.util

from lightning_fabric.utilities.distributed import _destroy_dist_connection

_registered = False


def destroy_process_group_at_exit() -> None:
    """Register Lightning's exit handler for every backend, once per process (a second run under NCCL, where
    Lightning registered it too, finds the group already gone), at exit and as a multiprocessing finalizer."""
    global _registered
    if not _registered:
        atexit.register(_destroy_dist_connection)
        multiprocessing.util.Finalize(None, _destroy_dist_connection, exitpriority=0)
        _registered = True
