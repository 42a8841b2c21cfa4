"""Several detection data modules served as one: multi-condition training and pooled test sets."""

from __future__ import annotations

from torch.utils.data import ConcatDataset, DataLoader

from lit_app.advsets.detection import DetectionDataModule
from lit_app.base import LitAppDataModule
from lit_app.splits import STAGE_SPLITS


class DetectionMixture(DetectionDataModule):
    """The union of the splits of detection data modules (each one keeps its own split by source clip).

    Any data module whose loaders batch ``(waveform, label)`` pairs with
    :func:`~lit_app.advsets.detection.collate_detection` can take part: the mixture concatenates the datasets
    behind each source's loaders and batches them again. Sources are set up once, so one source object
    can serve many mixtures (e.g. a training mixture and the test sets of a grid).

    Args:
        sources: the detection data modules to combine.
        batch_size: clips per batch.
        num_workers: DataLoader worker processes.
    """

    def __init__(self, sources: list[LitAppDataModule], batch_size: int = 32, num_workers: int = 0) -> None:
        super().__init__(batch_size, num_workers)
        if not sources:
            raise ValueError("a DetectionMixture needs at least one source")
        self.sources = list(sources)

    def prepare_data(self) -> None:
        for source in self.sources:
            source.prepare_data()

    def setup(self, stage: str) -> None:
        for source in self.sources:
            source.setup(stage)
        for split in STAGE_SPLITS[stage]:
            loaders = [self._source_loader(source, split) for source in self.sources]
            self.datasets[split] = ConcatDataset([loader.dataset for loader in loaders])

    @staticmethod
    def _source_loader(source: LitAppDataModule, split: str) -> DataLoader:
        method = {"train": source.train_dataloader, "val": source.val_dataloader, "test": source.test_dataloader}[split]
        loader = method()
        if not isinstance(loader, DataLoader):
            raise TypeError(f"{type(source).__name__}.{split} loader is a {type(loader).__name__}, not a single DataLoader")
        return loader

