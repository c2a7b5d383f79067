"""Networks: nothing about training lives here."""

from .build import NetworkConfig, build_network
from .resnet import ResNetMLP

__all__ = ["ResNetMLP", "NetworkConfig", "build_network"]
