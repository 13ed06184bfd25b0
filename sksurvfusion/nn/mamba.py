"""Mamba (v1) selective state-space mixer in plain PyTorch.

The module mirrors ``mamba_ssm.modules.mamba_simple.Mamba`` (constructor, initialisation,
``state_dict``) so that weights load into either. On a CUDA device with ``mamba_ssm``
installed it can run that package's fused kernels; everywhere else it runs the pure-PyTorch
kernels of :mod:`sksurvfusion.nn.scan`.
"""

from __future__ import annotations

import functools
import math
from itertools import chain
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sksurvfusion.nn._validation import check_choice
from sksurvfusion.nn.scan import (
    FUSED_MAX_LENGTH,
    FUSED_MAX_STATE,
    causal_conv1d_silu,
    mamba_mixer,
    mamba_mixer_inference,
    selective_scan,
)

__all__ = ["MAMBA_BACKENDS", "Mamba", "mamba_ssm_available"]

MAMBA_BACKENDS = ("auto", "torch", "mamba_ssm")

_INSTALL_HINT = (
    "mamba_backend='mamba_ssm' needs the mamba-ssm package and a CUDA GPU; install it on a "
    "CUDA machine with `pip install sksurvfusion[mamba]`, or use mamba_backend='torch' "
    "(or 'auto', which falls back to pure PyTorch)."
)


@functools.cache
def _load_mamba_ssm() -> tuple[SimpleNamespace | None, BaseException | None]:
    """Import the fused kernels of ``mamba_ssm`` once; ``(None, error)`` where they fail."""
    try:
        from mamba_ssm.ops.selective_scan_interface import mamba_inner_fn, selective_scan_fn
    # A broken CUDA extension raises OSError or RuntimeError rather than ImportError, and
    # "auto" must fall back to pure torch whatever the reason.
    except Exception as exc:
        return None, exc
    try:
        from causal_conv1d import causal_conv1d_fn
    except Exception:
        causal_conv1d_fn = None
    ops = SimpleNamespace(
        selective_scan_fn=selective_scan_fn,
        mamba_inner_fn=mamba_inner_fn,
        causal_conv1d_fn=causal_conv1d_fn,
    )
    return ops, None


def mamba_ssm_available() -> bool:
    """Whether the fused CUDA kernels of ``mamba_ssm`` can be imported here.

    Returns
    -------
    bool
        ``False`` without the ``mamba`` extra or without CUDA; the pure-PyTorch path is
        used then.

    Examples
    --------
    >>> from sksurvfusion.nn import mamba_ssm_available
    >>> isinstance(mamba_ssm_available(), bool)
    True
    """
    return _load_mamba_ssm()[0] is not None


def _require_mamba_ssm() -> SimpleNamespace:
    ops, error = _load_mamba_ssm()
    if ops is None:
        raise ImportError(f"{_INSTALL_HINT} (importing mamba_ssm failed: {error!r})") from error
    return ops


class Mamba(nn.Module):
    r"""Mamba (v1) selective state-space mixer, in plain PyTorch.

    A drop-in for ``mamba_ssm.modules.mamba_simple.Mamba`` [1]_: same constructor,
    initialisation, and ``state_dict`` keys and shapes, so weights load into either. For an
    input :math:`x \in \mathbb{R}^{L \times d_\text{model}}` it computes

    .. math::

        (u, z) &= x W_\text{in}, \qquad u \leftarrow \operatorname{SiLU}(
            \operatorname{conv1d}_\text{causal}(u)), \\
        (\delta, B, C) &= u W_x, \qquad \Delta = \operatorname{softplus}(\delta W_\Delta
            + b_\Delta), \qquad A = -\exp(A_\text{log}), \\
        h_t &= \exp(\Delta_t A) \odot h_{t-1} + \Delta_t B_t u_t, \qquad
        y_t = \langle h_t, C_t \rangle + D u_t, \\
        \text{out} &= (y \odot \operatorname{SiLU}(z)) W_\text{out}.

    Parameters
    ----------
    d_model : int
        Width of the input and output.
    d_state : int, default=16
        State size :math:`N` per channel.
    d_conv : int, default=4
        Width of the causal depthwise convolution.
    expand : int, default=2
        Inner width is ``expand * d_model``.
    dt_rank : int or "auto", default="auto"
        Rank of the :math:`\Delta` projection; ``"auto"`` is ``ceil(d_model / 16)``.
    dt_min, dt_max : float, default=0.001, 0.1
        Range of the log-uniform initial step size :math:`\operatorname{softplus}(b_\Delta)`.
    dt_init : {"random", "constant"}, default="random"
        Initialisation of :math:`W_\Delta`.
    dt_scale : float, default=1.0
        Scale of the :math:`W_\Delta` initialisation.
    dt_init_floor : float, default=1e-4
        Lower clamp of the initial step size.
    conv_bias : bool, default=True
        Whether the convolution has a bias.
    bias : bool, default=False
        Whether ``in_proj`` and ``out_proj`` have biases.
    use_fast_path : bool, default=True
        Run the whole mixer as one fused operation: ``mamba_ssm``'s ``mamba_inner_fn``
        (which needs ``causal_conv1d``) on that backend. On the pure-torch path, for
        float32 or float64 sequences of up to 16 tokens outside autocast: while gradients
        are recorded, one autograd node with a hand-written backward (up to 2**21 state
        elements, ``batch * length * d_inner * d_state``); without gradients, one kernel
        that keeps a single token's state in memory, at any batch size. Otherwise the
        blocked scan runs. Neither fused path supports higher-order gradients.
    layer_idx : int, optional
        Kept for compatibility (``mamba_ssm`` uses it for its inference cache).
    device, dtype : optional
        Factory arguments of the parameters.
    mamba_backend : {"auto", "torch", "mamba_ssm"}, default="auto"
        ``"auto"`` runs ``mamba_ssm``'s fused kernels when it imports and the input is on a
        GPU, else pure torch; ``"torch"`` always pure torch; ``"mamba_ssm"`` requires the
        kernels (ImportError here if they cannot be imported).

    References
    ----------
    .. [1] A. Gu and T. Dao, "Mamba: Linear-time sequence modeling with selective state
       spaces", arXiv:2312.00752, 2023.

    Examples
    --------
    >>> import torch
    >>> from sksurvfusion.nn import Mamba
    >>> mixer = Mamba(d_model=32)
    >>> mixer(torch.randn(4, 5, 32)).shape
    torch.Size([4, 5, 32])
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        use_fast_path: bool = True,
        layer_idx: int | None = None,
        device=None,
        dtype=None,
        *,
        mamba_backend: str = "auto",
    ) -> None:
        factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__()
        check_choice("dt_init", dt_init, ("random", "constant"))
        self.mamba_backend = check_choice("mamba_backend", mamba_backend, MAMBA_BACKENDS)
        if mamba_backend == "mamba_ssm":
            _require_mamba_ssm()
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.expand = expand
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else dt_rank
        self.use_fast_path = use_fast_path
        self.layer_idx = layer_idx

        # Same construction order as mamba_ssm, so one seed gives the same weights in both.
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias, **factory_kwargs)
        self.conv1d = nn.Conv1d(
            self.d_inner,
            self.d_inner,
            kernel_size=d_conv,
            groups=self.d_inner,
            padding=d_conv - 1,
            bias=conv_bias,
            **factory_kwargs,
        )
        self.x_proj = nn.Linear(
            self.d_inner, self.dt_rank + 2 * d_state, bias=False, **factory_kwargs
        )
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **factory_kwargs)

        # Variance-preserving init of the low-rank step projection.
        dt_init_std = self.dt_rank**-0.5 * dt_scale
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, dt_init_std)
        else:
            nn.init.uniform_(self.dt_proj.weight, -dt_init_std, dt_init_std)
        # softplus(bias) log-uniform in [dt_min, dt_max]: the bias is its softplus inverse.
        dt = torch.exp(
            torch.rand(self.d_inner, **factory_kwargs) * (math.log(dt_max) - math.log(dt_min))
            + math.log(dt_min)
        ).clamp(min=dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.dt_proj.bias._no_reinit = True

        # S4D-real initialisation A = -(1, ..., N) per channel; kept in float32 as upstream.
        A = torch.arange(1, d_state + 1, dtype=torch.float32, device=device)
        self.A_log = nn.Parameter(torch.log(A).repeat(self.d_inner, 1))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(self.d_inner, device=device))
        self.D._no_weight_decay = True

        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **factory_kwargs)

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, d_state={self.d_state}, d_conv={self.d_conv}, "
            f"expand={self.expand}, mamba_backend={self.mamba_backend!r}"
        )

    def forward(self, hidden_states: Tensor) -> Tensor:
        """Mix a sequence causally.

        Parameters
        ----------
        hidden_states : Tensor of shape (batch, length, d_model)

        Returns
        -------
        Tensor of shape (batch, length, d_model)
        """
        if self.mamba_backend != "torch" and hidden_states.is_cuda:
            ops = _load_mamba_ssm()[0]
            if ops is not None:
                return self._forward_mamba_ssm(hidden_states, ops)
        if self.mamba_backend == "mamba_ssm":
            raise RuntimeError(
                "mamba_backend='mamba_ssm' runs on CUDA tensors only; got a tensor on "
                f"{hidden_states.device}. Move the module to a GPU or use mamba_backend='auto'."
            )
        return self._forward_torch(hidden_states)

    def _forward_torch(self, hidden_states: Tensor) -> Tensor:
        dtype = hidden_states.dtype
        kernel = self._fused_kernel(hidden_states)
        if kernel is not None:
            return kernel(
                hidden_states,
                self.in_proj.weight,
                self.in_proj.bias,
                self.conv1d.weight,
                self.conv1d.bias,
                self.x_proj.weight,
                self.dt_proj.weight,
                self.dt_proj.bias,
                self.A_log,
                self.D,
                self.out_proj.weight,
                self.out_proj.bias,
            )
        # The scan runs in float32 at least, as mamba_ssm's reference path does.
        scan_dtype = torch.promote_types(dtype, torch.float32)
        # Two products with halves of in_proj instead of chunking one output: x and z come
        # out contiguous, and the backward pass needs no concatenation of their gradients.
        weight_x, weight_z = self.in_proj.weight.chunk(2)
        bias_x, bias_z = (None, None) if self.in_proj.bias is None else self.in_proj.bias.chunk(2)
        x = F.linear(hidden_states, weight_x, bias_x)
        z = F.linear(hidden_states, weight_z, bias_z)
        conv_bias = None if self.conv1d.bias is None else self.conv1d.bias.to(dtype)
        x = causal_conv1d_silu(x, self.conv1d.weight.squeeze(1).to(dtype), conv_bias)
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        y = selective_scan(
            x.to(scan_dtype),
            F.linear(dt, self.dt_proj.weight).to(scan_dtype),
            -torch.exp(self.A_log.to(scan_dtype)),
            B.to(scan_dtype),
            C.to(scan_dtype),
            self.D.to(scan_dtype),
            z=z.to(scan_dtype),
            delta_bias=self.dt_proj.bias.to(scan_dtype),
            delta_softplus=True,
        )
        return self.out_proj(y.to(dtype))

    def _fused_kernel(self, hidden_states: Tensor):
        """``mamba_mixer`` to train, ``mamba_mixer_inference`` without gradients, or None
        where the blocked scan runs instead (long sequences, large training states, mixed
        dtypes, autocast)."""
        dtype = hidden_states.dtype
        batch, length, _ = hidden_states.shape
        fusable = (
            self.use_fast_path
            and batch > 0
            and 0 < length <= FUSED_MAX_LENGTH
            and dtype in (torch.float32, torch.float64)
            # The mixer's submodules are leaves, so their own parameters are all of them;
            # this reads them directly, several times faster than self.parameters().
            and all(
                p is None or p.dtype == dtype
                for p in chain(
                    self._parameters.values(), *(m._parameters.values() for m in self.children())
                )
            )
            # its hand-written backward does not follow autocast's per-op dtypes
            and not torch.is_autocast_enabled(hidden_states.device.type)
        )
        if not fusable:
            return None
        if not torch.is_grad_enabled():
            return mamba_mixer_inference
        if batch * length * self.d_inner * self.d_state <= FUSED_MAX_STATE:
            return mamba_mixer
        return None

    def _forward_mamba_ssm(self, hidden_states: Tensor, ops: SimpleNamespace) -> Tensor:
        # Follows mamba_ssm's own forward: its kernels want (b, d, l) with l contiguous.
        batch, length, _ = hidden_states.shape
        xz = self.in_proj.weight @ hidden_states.reshape(batch * length, -1).t()
        xz = xz.view(-1, batch, length).permute(1, 0, 2)
        if self.in_proj.bias is not None:
            xz = xz + self.in_proj.bias.to(xz.dtype).unsqueeze(-1)
        A = -torch.exp(self.A_log.float())
        if self.use_fast_path and ops.causal_conv1d_fn is not None:
            return ops.mamba_inner_fn(
                xz,
                self.conv1d.weight,
                self.conv1d.bias,
                self.x_proj.weight,
                self.dt_proj.weight,
                self.out_proj.weight,
                self.out_proj.bias,
                A,
                None,
                None,
                self.D.float(),
                delta_bias=self.dt_proj.bias.float(),
                delta_softplus=True,
            )
        x, z = xz.chunk(2, dim=1)
        if ops.causal_conv1d_fn is None:
            x = F.silu(self.conv1d(x)[..., :length])
        else:
            x = ops.causal_conv1d_fn(
                x=x,
                weight=self.conv1d.weight.squeeze(1),
                bias=self.conv1d.bias,
                activation="silu",
            )
        x_dbl = self.x_proj(x.transpose(1, 2).reshape(batch * length, -1))
        dt, B, C = x_dbl.split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = (self.dt_proj.weight @ dt.t()).view(-1, batch, length).permute(1, 0, 2)
        B = B.view(batch, length, -1).transpose(1, 2).contiguous()
        C = C.view(batch, length, -1).transpose(1, 2).contiguous()
        y = ops.selective_scan_fn(
            x,
            dt,
            A,
            B,
            C,
            self.D.float(),
            z=z,
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
        )
        return self.out_proj(y.transpose(1, 2))
