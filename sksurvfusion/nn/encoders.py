"""Modality encoders: from a row of embedding columns to a sequence of tokens."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice
from numbers import Integral

import torch
from torch import Tensor, nn

from sksurvfusion.nn._random import Dropout
from sksurvfusion.nn._validation import (
    check_fraction,
    check_positive_int,
    check_positive_real,
)

__all__ = ["ModalityEncoder", "ModalityLinear", "ModalityTokenizer"]

# Gain of the linear term for up to _LINEAR_GAIN_WIDTH columns; wider inputs scale it down
# in proportion (see ModalityLinear).
_LINEAR_GAIN = 10.0
_LINEAR_GAIN_WIDTH = 32


def _as_column_table(columns: Sequence[Sequence[int]]) -> list[list[int]]:
    table = []
    for i, cols in enumerate(columns):
        cols = [int(c) for c in cols]
        if not cols or min(cols) < 0:
            raise ValueError(
                f"modality {i} needs a non-empty list of non-negative column positions, "
                f"got {cols!r}."
            )
        table.append(cols)
    if not table:
        raise ValueError("modality_columns must name at least one modality.")
    return table


def _contiguous_block(columns: Sequence[int]) -> slice | None:
    """``columns`` as a slice when they are consecutive, else None.

    A slice of ``x`` is a view; an index gather of a few thousand columns costs several
    times more.
    """
    start = columns[0]
    return (
        slice(start, start + len(columns))
        if list(columns) == list(range(start, start + len(columns)))
        else None
    )


# Rows from which a training step reads a group's columns in place (see
# ModalityEncoder._first_layer); measured on 2 cores, 4 x 1024 columns to 64: fewer rows
# run the backward of the batched product slower than a copy and one product.
_IN_PLACE_MIN_ROWS = 128


def _all_present(mask: Tensor) -> bool:
    """Whether a batch misses no modality, so that masking can be skipped.

    Answered only for CPU tensors, where it costs a few microseconds against the
    masking's tens to hundreds; on a GPU the answer would make the host wait for the
    device, so there it is always False.
    """
    return mask.device.type == "cpu" and bool(mask.all())


class ModalityEncoder(nn.Module):
    r"""Shared 2-layer MLP that turns equal-width modalities into tokens.

    Each modality of the group is projected by the same
    ``Linear -> GELU -> Dropout -> Linear -> LayerNorm`` from its embedding width to
    ``d_model``; the whole group goes through one batched matmul. A group of one is a
    per-modality encoder.

    Parameters
    ----------
    columns : sequence of sequences of int
        Column positions in ``x`` of each modality of the group (all of equal length).
    d_model : int
        Token width.
    hidden : int, default=256
        Hidden width of the MLP.
    dropout : float, default=0.1
        Dropout after the activation.

    Examples
    --------
    >>> import torch
    >>> from sksurvfusion.nn import ModalityEncoder
    >>> encoder = ModalityEncoder([[0, 1, 2], [3, 4, 5]], d_model=8)
    >>> encoder(torch.randn(10, 6)).shape
    torch.Size([10, 2, 8])
    """

    def __init__(
        self,
        columns: Sequence[Sequence[int]],
        d_model: int,
        *,
        hidden: int = 256,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        table = _as_column_table(columns)
        widths = sorted({len(cols) for cols in table})
        if len(widths) > 1:
            raise ValueError(
                f"modalities sharing one encoder must have equal widths, got widths {widths}."
            )
        d_model = check_positive_int("d_model", d_model)
        hidden = check_positive_int("encoder_hidden", hidden)
        self.in_features = widths[0]
        self.register_buffer("columns", torch.tensor(table, dtype=torch.long))
        self._block = _contiguous_block([c for cols in table for c in cols])
        self.mlp = nn.Sequential(
            nn.Linear(self.in_features, hidden),
            nn.GELU(),
            Dropout(check_fraction("dropout", dropout)),
            nn.Linear(hidden, d_model),
            nn.LayerNorm(d_model),
        )

    def forward(self, x: Tensor, present: Tensor | None = None) -> Tensor:
        """Encode the group's modalities.

        Parameters
        ----------
        x : Tensor of shape (batch, n_features)
        present : bool Tensor of shape (batch, n_group_modalities), optional
            Missing modalities are zeroed before any arithmetic, so NaN in them cannot
            reach the output or the gradients; their tokens are meaningless and must be
            replaced by the caller.

        Returns
        -------
        Tensor of shape (batch, n_group_modalities, d_model)
        """
        if self._block is None:
            values = x[:, self.columns]
        else:
            values = x[:, self._block].unflatten(1, self.columns.shape)
        if present is not None:
            values = torch.where(present.unsqueeze(-1), values, 0.0)
        hidden = self._first_layer(values)
        for layer in islice(self.mlp, 1, None):
            hidden = layer(hidden)
        return hidden

    def _first_layer(self, values: Tensor) -> Tensor:
        """The first ``Linear`` of the MLP on ``values`` (batch, modalities, width).

        The modalities of a group in consecutive columns are a strided view of ``x``,
        which ``nn.Linear`` first copies to fold batch and modality into rows. A batched
        product over the modalities reads the view in place: at 1,489 rows of 4 x 1,024
        columns 20 % faster without gradients and 28 % with them, while below
        ``_IN_PLACE_MIN_ROWS`` rows its backward is the slower one.
        """
        linear = self.mlp[0]
        batch, n_modalities, _ = values.shape
        if (
            n_modalities == 1
            or values.is_contiguous()
            or (torch.is_grad_enabled() and batch < _IN_PLACE_MIN_ROWS)
        ):
            return linear(values)
        weight = linear.weight.t().expand(n_modalities, -1, -1)
        if linear.bias is None:
            hidden = torch.bmm(values.transpose(0, 1), weight)
        else:
            hidden = torch.baddbmm(linear.bias, values.transpose(0, 1), weight)
        return hidden.transpose(0, 1)


class ModalityLinear(nn.Module):
    r"""Linear function of the modalities' columns, a missing modality adding nothing.

    For a patient with modalities :math:`x_i` present where :math:`m_i = 1`, it gives

    .. math::

        g \sum_i m_i \, \beta_i^\top x_i,

    a Cox-model term beside the fusion network (as in wide-and-deep models): the network
    need not spend its capacity on the part of the hazard that is linear in the inputs.
    The coefficients :math:`\beta` start at zero and the fixed gain :math:`g` scales their
    learning rate: Adam moves every parameter by about ``lr`` per step, which would let a
    coefficient reach only about 0.1 in 30 epochs of 11 steps at ``lr=3e-4``, while a
    ridge Cox model on standardised inputs fits coefficients of several tenths. As Adam
    moves all coefficients at that rate, a step moves the term by an amount that grows
    with the number of columns :math:`p`, so the default gain is
    :math:`10 \min(1, 32 / p)`: 10 up to the 32 columns it was chosen on, and on
    thousands of embedding columns small enough that the risks do not run into their
    bound. A missing modality contributes zero, its standardised mean.

    Parameters
    ----------
    modality_columns : sequence of sequences of int
        Column positions in ``x`` of each modality, in token order.
    gain : float, optional
        The factor :math:`g`; by default :math:`10 \min(1, 32 / p)` for :math:`p`
        columns.

    Examples
    --------
    >>> import torch
    >>> from sksurvfusion.nn import ModalityLinear
    >>> linear = ModalityLinear([[0, 1], [2]])
    >>> x = torch.tensor([[1.0, 2.0, float("nan")]])
    >>> linear(x, torch.tensor([[True, False]])).shape
    torch.Size([1])
    """

    def __init__(
        self, modality_columns: Sequence[Sequence[int]], *, gain: float | None = None
    ) -> None:
        super().__init__()
        table = _as_column_table(modality_columns)
        flat = [c for cols in table for c in cols]
        if gain is None:
            gain = _LINEAR_GAIN * min(1.0, _LINEAR_GAIN_WIDTH / len(flat))
        self.gain = check_positive_real("gain", gain)
        owner = [i for i, cols in enumerate(table) for _ in cols]
        self.register_buffer("columns", torch.tensor(flat, dtype=torch.long))
        self.register_buffer("owner", torch.tensor(owner, dtype=torch.long))
        self._block = _contiguous_block(flat)
        self.weight = nn.Parameter(torch.zeros(len(flat)))

    def extra_repr(self) -> str:
        return f"in_features={self.weight.numel()}, gain={self.gain}"

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """The linear term of each row.

        Parameters
        ----------
        x : Tensor of shape (batch, n_features)
            May hold anything (NaN included) in the columns of missing modalities.
        mask : bool Tensor of shape (batch, n_modalities)
            True where the modality is present.

        Returns
        -------
        Tensor of shape (batch,)
        """
        values = x[:, self._block] if self._block is not None else x[:, self.columns]
        if not _all_present(mask):
            # Zeroed before the product, so NaN of a missing modality reaches no gradient.
            # The mask is widened as floats: index_select is vectorised for them, several
            # times slower for bools.
            keep = mask.to(values.dtype).index_select(1, self.owner) != 0
            values = torch.where(keep, values, 0.0)
        return self.gain * (values @ self.weight)


class ModalityTokenizer(nn.Module):
    r"""Turn a patient row into one token per modality.

    Token :math:`i` is :math:`\operatorname{enc}_{g(i)}(x_i) + e_i` for a present modality
    and :math:`m + e_i` for a missing one, where :math:`g(i)` is the modality's encoder
    group, :math:`e_i` a learned modality embedding and :math:`m` a learned mask token.
    Nothing of a missing modality's values reaches the tokens.

    Parameters
    ----------
    modality_columns : sequence of sequences of int
        Column positions of each modality in ``x``, in token order.
    d_model : int
        Token width.
    encoder_groups : sequence of sequences of int, optional
        Modality indices sharing one encoder (they must have equal widths); modalities not
        listed get their own encoder.
    hidden : int, default=256
        Hidden width of the encoders.
    dropout : float, default=0.1
        Dropout inside the encoders.
    modality_dropout : float, default=0.0
        While training, probability of masking each present modality of a row; at least
        one present modality of each row is always kept.

    Attributes
    ----------
    encoders : ModuleList of ModalityEncoder
        One per encoder group (listed groups first, then singletons in token order).
    groups : list of list of int
        Modality indices of each encoder.
    generator : torch.Generator or None
        Source of the modality-dropout draws; ``None`` uses torch's global generator.

    Examples
    --------
    Two MRI sequences of 4 columns share one encoder, a pathology embedding of 6 columns
    gets its own; the second patient has no pathology:

    >>> import torch
    >>> from sksurvfusion.nn import ModalityTokenizer
    >>> tokenizer = ModalityTokenizer(
    ...     [range(0, 4), range(4, 8), range(8, 14)], d_model=16, encoder_groups=[[0, 1]]
    ... )
    >>> x = torch.randn(2, 14)
    >>> mask = torch.tensor([[True, True, True], [True, True, False]])
    >>> tokens, mask = tokenizer(x, mask)
    >>> tokens.shape
    torch.Size([2, 3, 16])
    >>> tokenizer.groups
    [[0, 1], [2]]
    """

    generator: torch.Generator | None = None

    def __init__(
        self,
        modality_columns: Sequence[Sequence[int]],
        d_model: int,
        *,
        encoder_groups: Sequence[Sequence[int]] | None = None,
        hidden: int = 256,
        dropout: float = 0.1,
        modality_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        table = _as_column_table(modality_columns)
        d_model = check_positive_int("d_model", d_model)
        self.n_modalities = len(table)
        self.modality_dropout = check_fraction("modality_dropout", modality_dropout, allow_one=True)
        self.groups = self._resolve_groups(encoder_groups, table)
        self.encoders = nn.ModuleList(
            ModalityEncoder([table[i] for i in group], d_model, hidden=hidden, dropout=dropout)
            for group in self.groups
        )
        group_order = [i for group in self.groups for i in group]
        self.register_buffer("group_order", torch.tensor(group_order, dtype=torch.long))
        # When the groups already list the modalities in token order, skip both reorderings.
        self._in_token_order = group_order == list(range(self.n_modalities))
        # Inverse permutation: from encoder-group order back to token order.
        token_order = torch.empty(self.n_modalities, dtype=torch.long)
        token_order[self.group_order] = torch.arange(self.n_modalities)
        self.register_buffer("token_order", token_order)
        self.modality_embedding = nn.Parameter(torch.randn(self.n_modalities, d_model) * 0.02)
        self.mask_token = nn.Parameter(torch.randn(d_model) * 0.02)

    @staticmethod
    def _resolve_groups(encoder_groups, table) -> list[list[int]]:
        n = len(table)
        groups: list[list[int]] = []
        seen: dict[int, int] = {}
        for g, group in enumerate(encoder_groups or ()):
            members = list(group)
            if not members:
                raise ValueError(f"encoder_groups[{g}] is empty.")
            for k, i in enumerate(members):
                # bool is an Integral, but True as a modality index is a mistake
                if isinstance(i, bool) or not isinstance(i, Integral) or not 0 <= i < n:
                    raise ValueError(
                        f"encoder_groups[{g}] holds {i!r}, which is not a modality index in "
                        f"[0, {n})."
                    )
                members[k] = i = int(i)
                if i in seen:
                    raise ValueError(
                        f"modality {i} is listed in encoder_groups[{seen[i]}] and "
                        f"encoder_groups[{g}]; a modality can share only one encoder."
                    )
                seen[i] = g
            widths = {i: len(table[i]) for i in members}
            if len(set(widths.values())) > 1:
                listing = ", ".join(f"modality {i}: {w} columns" for i, w in widths.items())
                raise ValueError(
                    f"encoder_groups[{g}] shares one encoder between modalities of different "
                    f"widths ({listing}); grouped modalities must have equal widths."
                )
            groups.append(members)
        groups += [[i] for i in range(n) if i not in seen]
        return groups

    def drop_modalities(self, mask: Tensor) -> Tensor:
        """Mask present modalities at random, keeping at least one per row."""
        scores = torch.rand(mask.shape, device=mask.device, generator=self.generator)
        kept = mask & (scores >= self.modality_dropout)
        # A row that lost all its modalities keeps the present one with the highest score.
        rescue = torch.where(mask, scores, -1.0).argmax(dim=1, keepdim=True)
        rescue = torch.zeros_like(mask).scatter_(1, rescue, True) & mask
        return torch.where(kept.any(dim=1, keepdim=True), kept, rescue)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Tokenise a batch.

        Parameters
        ----------
        x : Tensor of shape (batch, n_features)
            May hold anything (NaN included) in the columns of missing modalities.
        mask : bool Tensor of shape (batch, n_modalities)
            True where the modality is present.

        Returns
        -------
        tokens : Tensor of shape (batch, n_modalities, d_model)
        mask : bool Tensor of shape (batch, n_modalities)
            The mask after modality dropout (equal to the input outside training).
        """
        if self.training and self.modality_dropout > 0:
            mask = self.drop_modalities(mask)
        dense = _all_present(mask)
        grouped_mask = mask if self._in_token_order else mask[:, self.group_order]
        if len(self.encoders) == 1:
            tokens = self.encoders[0](x, None if dense else grouped_mask)
        else:
            grouped_mask = grouped_mask.split([len(g) for g in self.groups], 1)
            tokens = torch.cat(
                [
                    enc(x, None if dense else m)
                    for enc, m in zip(self.encoders, grouped_mask, strict=True)
                ],
                dim=1,
            )
        if not self._in_token_order:
            tokens = tokens[:, self.token_order]
        if not dense:
            tokens = torch.where(mask.unsqueeze(-1), tokens, self.mask_token.to(tokens.dtype))
        return tokens + self.modality_embedding, mask
