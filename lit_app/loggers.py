"""Lightning's CSV logger, with a version folder that two runs started together cannot share.

Lightning numbers a run's ``version_<n>`` folder by listing the existing ones and taking the next number, and creates
it only when the first metrics are written. Two runs started in the same second (two ``lit-app fit`` commands, or
two ``engine-transfer`` processes, on one preset) took the same number, wrote into one ``metrics.csv`` and the
second crashed at its first validation (``dict contains fields not in fieldnames``). Here the number is claimed by
creating its folder, which only one process can do.
"""

from __future__ import annotations

import os

from lightning_fabric.utilities.rank_zero import rank_zero_only
from pytorch_lightning.loggers import CSVLogger as LightningCSVLogger


class CSVLogger(LightningCSVLogger):
    """:class:`pytorch_lightning.loggers.CSVLogger` whose next version is claimed atomically (the arguments are
    Lightning's)."""

    def _get_next_version(self) -> int:
        version = super()._get_next_version()
        if rank_zero_only.rank != 0:  # only rank 0 writes logs; other ranks must not claim folders
            return version
        root = os.path.join(self._root_dir, self.name)
        self._fs.makedirs(root, exist_ok=True)
        while True:
            try:
                self._fs.makedirs(os.path.join(root, f"version_{version}"), exist_ok=False)
                return version
            except FileExistsError:
                version += 1
