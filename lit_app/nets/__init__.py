"""Pure ``nn.Module`` networks, free of Lightning, reused by the LightningModules and the attacks."""

from lit_app.nets.kws_cnn import CnnTradFpool3

__all__ = ["CnnTradFpool3"]
