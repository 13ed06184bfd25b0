"""PyTorch modules of sksurvfusion: encoders, Mamba, adapters and the fusion network.

Plain PyTorch only; nothing here imports scikit-learn, skorch or ``mamba_ssm`` (the latter
is imported lazily, on first use of a CUDA tensor).
"""

from sksurvfusion.nn.adapters import (
    MambaAdapter,
    MambaBlock,
    MLPAdapter,
    TransformerAdapter,
    pool_tokens,
)
from sksurvfusion.nn.encoders import ModalityEncoder, ModalityLinear, ModalityTokenizer
from sksurvfusion.nn.mamba import Mamba, mamba_ssm_available
from sksurvfusion.nn.network import FusionSurvivalNet
from sksurvfusion.nn.scan import causal_conv1d_silu, selective_scan

__all__ = [
    "FusionSurvivalNet",
    "MLPAdapter",
    "Mamba",
    "MambaAdapter",
    "MambaBlock",
    "ModalityEncoder",
    "ModalityLinear",
    "ModalityTokenizer",
    "TransformerAdapter",
    "causal_conv1d_silu",
    "mamba_ssm_available",
    "pool_tokens",
    "selective_scan",
]
