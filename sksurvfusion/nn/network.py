"""The full fusion network: modality encoders, adapter and risk head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from sksurvfusion.nn._validation import (
    check_choice,
    check_fraction,
    check_positive_int,
    check_positive_real,
)
from sksurvfusion.nn.adapters import POOLINGS, MambaAdapter, MLPAdapter, TransformerAdapter
from sksurvfusion.nn.encoders import ModalityLinear, ModalityTokenizer
from sksurvfusion.nn.mamba import MAMBA_BACKENDS

__all__ = ["ADAPTERS", "FusionSurvivalNet"]

ADAPTERS = ("mamba", "transformer", "mlp")


class FusionSurvivalNet(nn.Module):
    r"""Multi-modal survival network: modality tokens, a fusion adapter, a risk head.

    Each modality (a group of columns of ``x``) is encoded into one token
    (:class:`ModalityTokenizer`); an adapter fuses the tokens into a patient
    representation :math:`r`; a linear head gives the log-hazard

    .. math::

        \eta = b \tanh\!\left(\frac{w^\top r + c + \ell(x)}{b}\right),

    bounded in :math:`(-b, b)` by ``risk_bound`` :math:`b` (unbounded when ``None``),
    where :math:`\ell(x)` is the linear term of :class:`ModalityLinear` with
    ``linear_term=True`` and 0 otherwise.

    Parameters
    ----------
    modality_columns : sequence of sequences of int
        Column positions of each modality in ``x``, in token order.
    encoder_groups : sequence of sequences of int, optional
        Modality indices sharing one encoder; unlisted modalities get their own.
    adapter : {"mamba", "transformer", "mlp"}, default="mamba"
        Fusion module: :class:`MambaAdapter`, :class:`TransformerAdapter` or
        :class:`MLPAdapter`.
    d_model : int, default=64
        Token and representation width.
    n_layers : int, default=2
        Layers of the Mamba or Transformer adapter.
    d_state, d_conv, expand : int, default=16, 4, 2
        Mamba sizes.
    n_heads : int, default=4
        Attention heads of the Transformer adapter (must divide ``d_model``).
    encoder_hidden : int, default=256
        Hidden width of the modality encoders.
    dropout : float, default=0.1
        Dropout in encoders and adapter.
    modality_dropout : float, default=0.0
        While training, probability of masking each present modality (at least one per
        row is kept).
    pooling : {"mean", "last"}, default="mean"
        Pooling of the sequence adapters over present tokens.
    bidirectional : bool, default=False
        Mamba adapter only: also read the tokens backwards.
    risk_bound : float or None, default=3.0
        Bound :math:`b` of the risk; ``None`` for a plain linear head.
    linear_term : bool, default=False
        Add a linear function of the modalities' columns to the log-hazard
        (:class:`ModalityLinear`).
    mamba_backend : {"auto", "torch", "mamba_ssm"}, default="auto"
        See :class:`Mamba`.

    Examples
    --------
    >>> import torch
    >>> from sksurvfusion.nn import FusionSurvivalNet
    >>> net = FusionSurvivalNet([[0, 1, 2], [3, 4]], d_model=16)
    >>> x = torch.randn(8, 5)
    >>> mask = torch.ones(8, 2, dtype=torch.bool)
    >>> net(x, mask).shape, net.embed(x, mask).shape
    (torch.Size([8]), torch.Size([8, 16]))
    """

    def __init__(
        self,
        modality_columns: Sequence[Sequence[int]],
        *,
        encoder_groups: Sequence[Sequence[int]] | None = None,
        adapter: str = "mamba",
        d_model: int = 64,
        n_layers: int = 2,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        n_heads: int = 4,
        encoder_hidden: int = 256,
        dropout: float = 0.1,
        modality_dropout: float = 0.0,
        pooling: str = "mean",
        bidirectional: bool = False,
        risk_bound: float | None = 3.0,
        linear_term: bool = False,
        mamba_backend: str = "auto",
    ) -> None:
        super().__init__()
        self.adapter_name = check_choice("adapter", adapter, ADAPTERS)
        d_model = check_positive_int("d_model", d_model)
        n_layers = check_positive_int("n_layers", n_layers)
        d_state = check_positive_int("d_state", d_state)
        d_conv = check_positive_int("d_conv", d_conv)
        expand = check_positive_int("expand", expand)
        n_heads = check_positive_int("n_heads", n_heads)
        encoder_hidden = check_positive_int("encoder_hidden", encoder_hidden)
        dropout = check_fraction("dropout", dropout)
        pooling = check_choice("pooling", pooling, POOLINGS)
        mamba_backend = check_choice("mamba_backend", mamba_backend, MAMBA_BACKENDS)
        self.risk_bound = (
            None if risk_bound is None else check_positive_real("risk_bound", risk_bound)
        )

        self.tokenizer = ModalityTokenizer(
            modality_columns,
            d_model,
            encoder_groups=encoder_groups,
            hidden=encoder_hidden,
            dropout=dropout,
            modality_dropout=modality_dropout,
        )
        self.n_modalities = self.tokenizer.n_modalities
        if adapter == "mamba":
            self.adapter = MambaAdapter(
                d_model,
                n_layers=n_layers,
                d_state=d_state,
                d_conv=d_conv,
                expand=expand,
                dropout=dropout,
                pooling=pooling,
                bidirectional=bidirectional,
                mamba_backend=mamba_backend,
            )
        elif adapter == "transformer":
            self.adapter = TransformerAdapter(
                d_model, n_layers=n_layers, n_heads=n_heads, dropout=dropout, pooling=pooling
            )
        else:
            self.adapter = MLPAdapter(d_model, self.n_modalities, dropout=dropout)
        self.head = nn.Linear(d_model, 1)
        self.linear = ModalityLinear(modality_columns) if linear_term else None

    def _check_inputs(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        if x.ndim != 2 or mask.ndim != 2 or mask.shape != (x.shape[0], self.n_modalities):
            raise ValueError(
                f"expected x of shape (batch, n_features) and mask of shape (batch, "
                f"{self.n_modalities}); got {tuple(x.shape)} and {tuple(mask.shape)}."
            )
        return x.to(self.head.weight.dtype), mask.to(torch.bool)

    def embed(self, x: Tensor, mask: Tensor) -> Tensor:
        """Fused patient representation (the adapter output).

        Parameters
        ----------
        x : Tensor of shape (batch, n_features)
            Values of missing modalities are ignored (NaN allowed).
        mask : bool Tensor of shape (batch, n_modalities)
            True where the modality is present.

        Returns
        -------
        Tensor of shape (batch, d_model)
        """
        return self._embed_and_mask(x, mask)[0]

    def _embed_and_mask(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x, mask = self._check_inputs(x, mask)
        tokens, mask = self.tokenizer(x, mask)
        return self.adapter(tokens, mask), x, mask

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Risk score (log-hazard), higher meaning shorter survival.

        Parameters
        ----------
        x : Tensor of shape (batch, n_features)
            Values of missing modalities are ignored (NaN allowed).
        mask : bool Tensor of shape (batch, n_modalities)
            True where the modality is present.

        Returns
        -------
        Tensor of shape (batch,)
        """
        fused, x, mask = self._embed_and_mask(x, mask)
        risk = self.head(fused).squeeze(-1)
        if self.linear is not None:
            # after modality dropout: a dropped modality leaves both paths
            risk = risk + self.linear(x, mask)
        if self.risk_bound is None:
            return risk
        return self.risk_bound * torch.tanh(risk / self.risk_bound)
