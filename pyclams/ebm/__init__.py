"""The energy-based part: regularised generative loss, SGLD sampler, replay buffer, and the
other EBMs of the comparison (VERA's amortised generator, HDGE's contrastive loss)."""

from .buffer import ReplayBuffer
from .hdge import HDGETerm, LogitQueue, hdge_loss
from .losses import METHODS, GenerativeLossConfig, generative_loss, regularise
from .sgld import SGLDConfig, sgld_sample
from .vera import VERA, VERAGenerator

__all__ = ["ReplayBuffer", "GenerativeLossConfig", "generative_loss", "regularise",
           "SGLDConfig", "sgld_sample", "METHODS", "HDGETerm", "LogitQueue", "hdge_loss",
           "VERA", "VERAGenerator"]
