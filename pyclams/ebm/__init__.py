"""The energy-based part: regularised generative loss, SGLD sampler and replay buffer."""

from .buffer import ReplayBuffer
from .losses import PRESETS, GenerativeLossConfig, generative_loss, regularise
from .sgld import SGLDConfig, sgld_sample

__all__ = ["ReplayBuffer", "GenerativeLossConfig", "PRESETS", "generative_loss", "regularise",
           "SGLDConfig", "sgld_sample"]
