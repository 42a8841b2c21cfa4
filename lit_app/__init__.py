"""lit-app: adversarial-example research on speech models with PyTorch Lightning."""

__version__ = "0.1.0"
