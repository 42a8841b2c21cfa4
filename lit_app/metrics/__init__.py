"""Metrics of the app that torchmetrics does not ship, and the figures made from them."""

from lit_app.metrics.detection import BinaryEER, detection_metrics, equal_error_rate, seed_mean_auroc_interval

__all__ = ["BinaryEER", "detection_metrics", "equal_error_rate", "seed_mean_auroc_interval"]
