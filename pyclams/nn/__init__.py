"""Networks: nothing about training lives here."""

from .resnet import ResNetMLP

__all__ = ["ResNetMLP"]
