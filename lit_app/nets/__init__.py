"""Pure ``nn.Module`` networks, free of Lightning, reused by the LightningModules and the attacks."""

from lit_app.nets.kws_cnn import CnnTradFpool3
from lit_app.nets.kws_resnet import Res8

__all__ = ["CnnTradFpool3", "Res8"]
