"""Adapters: fuse a sequence of modality tokens into one patient representation.

Every adapter has the same interface, ``forward(tokens, mask) -> (batch, d_model)`` with
``tokens`` of shape ``(batch, n_tokens, d_model)`` and ``mask`` a boolean
``(batch, n_tokens)`` that is True for present modalities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sksurvfusion.nn._random import Dropout
from sksurvfusion.nn._validation import check_choice, check_fraction, check_positive_int
from sksurvfusion.nn.mamba import MAMBA_BACKENDS, Mamba

__all__ = [
    "POOLINGS",
    "MLPAdapter",
    "MambaAdapter",
    "MambaBlock",
    "TransformerAdapter",
    "pool_tokens",
]

POOLINGS = ("mean", "last")


def pool_tokens(sequence: Tensor, mask: Tensor, pooling: str = "mean") -> Tensor:
    """Pool a token sequence over its present tokens.

    Parameters
    ----------
    sequence : Tensor of shape (batch, n_tokens, d_model)
    mask : bool Tensor of shape (batch, n_tokens)
        True for present tokens; only these are pooled.
    pooling : {"mean", "last"}, default="mean"
        Mean of the present tokens, or the last present token.

    Returns
    -------
    Tensor of shape (batch, d_model)
        A row without present tokens pools to zeros ("mean") or its first token ("last").

    Examples
    --------
    >>> import torch
    >>> from sksurvfusion.nn.adapters import pool_tokens
    >>> sequence = torch.tensor([[[1.0], [2.0], [6.0]]])
    >>> mask = torch.tensor([[True, False, True]])
    >>> pool_tokens(sequence, mask)
    tensor([[3.5000]])
    >>> pool_tokens(sequence, mask, "last")
    tensor([[6.]])
    """
    if pooling == "mean":
        weights = mask.to(sequence.dtype)
        weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=1)
        return torch.bmm(weights.unsqueeze(1), sequence).squeeze(1)
    if pooling == "last":
        length = sequence.shape[1]
        positions = torch.arange(1, length + 1, device=mask.device) * mask
        last = positions.argmax(dim=1)
        return sequence[torch.arange(sequence.shape[0], device=sequence.device), last]
    raise ValueError(f"pooling must be 'mean' or 'last', got {pooling!r}.")


class MambaBlock(nn.Module):
    """Pre-norm residual Mamba block: ``x + Dropout(Mamba(LayerNorm(x)))``.

    Parameters
    ----------
    d_model : int
        Token width.
    d_state, d_conv, expand : int
        Passed to :class:`~sksurvfusion.nn.Mamba`.
    dropout : float, default=0.0
        Dropout on the mixer output.
    mamba_backend : {"auto", "torch", "mamba_ssm"}, default="auto"
        See :class:`~sksurvfusion.nn.Mamba`.
    layer_idx : int, optional
        Index of the block in its stack.

    Examples
    --------
    >>> import torch
    >>> from sksurvfusion.nn.adapters import MambaBlock
    >>> block = MambaBlock(32)
    >>> block(torch.randn(8, 5, 32)).shape
    torch.Size([8, 5, 32])
    """

    def __init__(
        self,
        d_model: int,
        *,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dropout: float = 0.0,
        mamba_backend: str = "auto",
        layer_idx: int | None = None,
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.mixer = Mamba(
            d_model,
            d_state=d_state,
            d_conv=d_conv,
            expand=expand,
            layer_idx=layer_idx,
            mamba_backend=mamba_backend,
        )
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block to ``x`` of shape (batch, length, d_model)."""
        return x + self.dropout(self.mixer(self.norm(x)))


class MambaAdapter(nn.Module):
    r"""Fuse modality tokens with a stack of Mamba blocks.

    ``n_layers`` :class:`MambaBlock` s and a final LayerNorm read the tokens in order (a
    missing modality is its mask token, so every row has the same length); the outputs of
    the present tokens are then pooled. With ``bidirectional=True`` a second stack reads
    the tokens backwards and the two pooled vectors are averaged, so the fused
    representation depends less on the token order.

    Parameters
    ----------
    d_model : int
        Token width.
    n_layers : int, default=2
        Blocks per direction.
    d_state, d_conv, expand : int, default=16, 4, 2
        Mamba sizes (see :class:`~sksurvfusion.nn.Mamba`).
    dropout : float, default=0.1
        Dropout on each block's mixer output.
    pooling : {"mean", "last"}, default="mean"
        Mean over present tokens, or the last present token (in each direction's reading
        order).
    bidirectional : bool, default=False
        Add a second stack that reads the tokens backwards.
    mamba_backend : {"auto", "torch", "mamba_ssm"}, default="auto"
        See :class:`~sksurvfusion.nn.Mamba`.

    Examples
    --------
    >>> import torch
    >>> from sksurvfusion.nn import MambaAdapter
    >>> adapter = MambaAdapter(16, n_layers=1)
    >>> tokens, mask = torch.randn(8, 5, 16), torch.ones(8, 5, dtype=torch.bool)
    >>> adapter(tokens, mask).shape
    torch.Size([8, 16])
    """

    def __init__(
        self,
        d_model: int,
        *,
        n_layers: int = 2,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dropout: float = 0.1,
        pooling: str = "mean",
        bidirectional: bool = False,
        mamba_backend: str = "auto",
    ) -> None:
        super().__init__()
        d_model = check_positive_int("d_model", d_model)
        n_layers = check_positive_int("n_layers", n_layers)
        block_kwargs = {
            "d_state": check_positive_int("d_state", d_state),
            "d_conv": check_positive_int("d_conv", d_conv),
            "expand": check_positive_int("expand", expand),
            "dropout": check_fraction("dropout", dropout),
            "mamba_backend": check_choice("mamba_backend", mamba_backend, MAMBA_BACKENDS),
        }
        self.pooling = check_choice("pooling", pooling, POOLINGS)
        self.bidirectional = bool(bidirectional)
        self.blocks = nn.Sequential(
            *(MambaBlock(d_model, layer_idx=i, **block_kwargs) for i in range(n_layers))
        )
        self.norm = nn.LayerNorm(d_model)
        if self.bidirectional:
            self.backward_blocks = nn.Sequential(
                *(MambaBlock(d_model, layer_idx=i, **block_kwargs) for i in range(n_layers))
            )
            self.backward_norm = nn.LayerNorm(d_model)

    def forward(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """Fuse ``tokens`` (batch, n_tokens, d_model) into (batch, d_model)."""
        fused = pool_tokens(self.norm(self.blocks(tokens)), mask, self.pooling)
        if not self.bidirectional:
            return fused
        backward = self.backward_norm(self.backward_blocks(tokens.flip(1)))
        return 0.5 * (fused + pool_tokens(backward, mask.flip(1), self.pooling))


class TransformerAdapter(nn.Module):
    """Fuse modality tokens with a pre-norm Transformer encoder.

    Missing modalities are excluded from attention through the key-padding mask and from
    the pooling. Token order is carried by the modality embeddings of the tokens.

    The parameters are those of a :class:`torch.nn.TransformerEncoder` of pre-norm GELU
    layers (``encoder``), and in evaluation mode the output is that module's. The
    forward pass is written out here so that every dropout, attention weights included,
    draws from ``generator`` when one is set (:func:`~sksurvfusion.nn._random.set_generator`).

    Parameters
    ----------
    d_model : int
        Token width.
    n_layers : int, default=2
        Encoder layers.
    n_heads : int, default=4
        Attention heads; must divide ``d_model``.
    dropout : float, default=0.1
        Dropout inside the encoder layers.
    pooling : {"mean", "last"}, default="mean"
        Mean over present tokens, or the last present token.
    dim_feedforward : int, optional
        Width of the feed-forward sublayer; ``4 * d_model`` by default.

    Examples
    --------
    >>> import torch
    >>> from sksurvfusion.nn import TransformerAdapter
    >>> adapter = TransformerAdapter(16, n_layers=1, n_heads=2)
    >>> tokens, mask = torch.randn(8, 5, 16), torch.ones(8, 5, dtype=torch.bool)
    >>> adapter(tokens, mask).shape
    torch.Size([8, 16])
    """

    def __init__(
        self,
        d_model: int,
        *,
        n_layers: int = 2,
        n_heads: int = 4,
        dropout: float = 0.1,
        pooling: str = "mean",
        dim_feedforward: int | None = None,
    ) -> None:
        super().__init__()
        d_model = check_positive_int("d_model", d_model)
        n_layers = check_positive_int("n_layers", n_layers)
        n_heads = check_positive_int("n_heads", n_heads)
        if d_model % n_heads:
            raise ValueError(
                f"n_heads={n_heads} must divide d_model={d_model} for the transformer adapter."
            )
        if dim_feedforward is None:
            dim_feedforward = 4 * d_model
        layer = nn.TransformerEncoderLayer(
            d_model,
            n_heads,
            dim_feedforward=check_positive_int("dim_feedforward", dim_feedforward),
            dropout=check_fraction("dropout", dropout),
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        # Nested tensors do not apply to norm_first layers; saying so avoids a warning.
        self.encoder = nn.TransformerEncoder(
            layer, n_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False
        )
        for layer in self.encoder.layers:
            layer.dropout, layer.dropout1, layer.dropout2 = (Dropout(dropout) for _ in range(3))
        self.attention_dropout = Dropout(dropout)
        self.n_heads = n_heads
        self.pooling = check_choice("pooling", pooling, POOLINGS)

    def _attend(self, attention: nn.MultiheadAttention, x: Tensor, padding: Tensor) -> Tensor:
        batch, length, width = x.shape
        qkv = F.linear(x, attention.in_proj_weight, attention.in_proj_bias)
        qkv = qkv.view(batch, length, 3, self.n_heads, width // self.n_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (batch, heads, length, head width)
        scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
        scores = scores.masked_fill(padding[:, None, None, :], float("-inf"))
        weights = self.attention_dropout(scores.softmax(dim=-1))
        heads = (weights @ v).transpose(1, 2).reshape(batch, length, width)
        return attention.out_proj(heads)

    def forward(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """Fuse ``tokens`` (batch, n_tokens, d_model) into (batch, d_model)."""
        # A row with nothing to attend to would give NaN; let it attend to its mask tokens.
        padding = ~mask & mask.any(dim=1, keepdim=True)
        x = tokens
        for layer in self.encoder.layers:
            x = x + layer.dropout1(self._attend(layer.self_attn, layer.norm1(x), padding))
            hidden = layer.dropout(layer.activation(layer.linear1(layer.norm2(x))))
            x = x + layer.dropout2(layer.linear2(hidden))
        return pool_tokens(self.encoder.norm(x), mask, self.pooling)


class MLPAdapter(nn.Module):
    """Static fusion baseline: an MLP over the concatenated tokens.

    Missing modalities enter as their mask tokens, so the input width is fixed.

    Parameters
    ----------
    d_model : int
        Token width (and output width).
    n_tokens : int
        Number of tokens (modalities).
    hidden : int, optional
        Hidden width; ``4 * d_model`` by default.
    dropout : float, default=0.1
        Dropout after the activation.

    Examples
    --------
    >>> import torch
    >>> from sksurvfusion.nn import MLPAdapter
    >>> adapter = MLPAdapter(16, n_tokens=5)
    >>> tokens, mask = torch.randn(8, 5, 16), torch.ones(8, 5, dtype=torch.bool)
    >>> adapter(tokens, mask).shape
    torch.Size([8, 16])
    """

    def __init__(
        self,
        d_model: int,
        n_tokens: int,
        *,
        hidden: int | None = None,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        d_model = check_positive_int("d_model", d_model)
        n_tokens = check_positive_int("n_tokens", n_tokens)
        hidden = check_positive_int("hidden", 4 * d_model if hidden is None else hidden)
        self.mlp = nn.Sequential(
            nn.Linear(n_tokens * d_model, hidden),
            nn.GELU(),
            Dropout(check_fraction("dropout", dropout)),
            nn.Linear(hidden, d_model),
            nn.LayerNorm(d_model),
        )

    def forward(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """Fuse ``tokens`` (batch, n_tokens, d_model) into (batch, d_model)."""
        return self.mlp(tokens.flatten(1))
