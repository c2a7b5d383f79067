"""The energy-based part: regularised generative loss, SGLD sampler, replay buffer."""

from .buffer import ReplayBuffer
from .losses import GenerativeLossConfig, generative_loss, regularise
from .sgld import SGLDConfig, sgld_sample

__all__ = ["ReplayBuffer", "GenerativeLossConfig", "generative_loss", "regularise",
           "SGLDConfig", "sgld_sample"]
