"""The whole Mamba mixer as one autograd Function, for short sequences.

Fusion sequences hold a handful of tokens. At that size a training step is bound by the
number of tensor operations, each costing a few microseconds of dispatch and autograd
bookkeeping, not by arithmetic. Recorded op by op, one mixer layer takes about 330
operations forward and backward; written out by hand here it takes about 80: the input
projection, convolution, scan, gate and output projection run in one forward with the
state kept for the backward pass, whose gradients are written out below.

The state of every token is stored, ``(batch, length, d_inner, d_state)``, so memory grows
with ``length``; :class:`~sksurvfusion.nn.Mamba` uses this path only up to
``FUSED_MAX_LENGTH`` tokens and ``FUSED_MAX_STATE`` state elements, and the blocked scan
of :mod:`sksurvfusion.nn.scan`, which recomputes the state instead, beyond.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from sksurvfusion.nn.scan import _LOG2E, _SOFTPLUS_BETA, _SOFTPLUS_THRESHOLD, _causal_conv

__all__ = ["FUSED_MAX_LENGTH", "FUSED_MAX_STATE", "mamba_inner"]

# Longest sequence run by the fused mixer. Fusion sequences are far shorter; the fused
# mixer was measured faster than the blocked scan up to 128 tokens (batch 4), but it
# stores ``length`` times the state of one token.
FUSED_MAX_LENGTH = 32

# Largest state, batch * length * d_inner * d_state elements, run by the fused mixer. Its
# passes over the whole state stop fitting in cache beyond about this size, where the
# blocked scan, which works block by block, becomes faster (measured on a 2-core AMD EPYC
# VM: fused 1.8 ms against 2.8 ms at 82k elements, 3.8 against 4.2 at 328k, 6.9 against
# 5.4 at 655k, forward and backward).
FUSED_MAX_STATE = 2**19


class _MambaInnerFn(torch.autograd.Function):
    """The mixer, batch-first. Projections run on (batch * length, features) matrices, and
    per-token loops over lists of views, to keep the count of operations down."""

    @staticmethod
    def forward(ctx, h, w_in, b_in, w_conv, b_conv, w_x, w_dt, b_dt, A_log, D, w_out, b_out):
        d_inner, d_state = A_log.shape
        dt_rank = w_dt.shape[1]
        batch, length, d_model = h.shape
        shape = (batch, length, d_inner)
        h = h.reshape(-1, d_model)
        xz = F.linear(h, w_in, b_in)
        x, z = xz[:, :d_inner].view(shape), xz[:, d_inner:]
        taps = w_conv.t().contiguous()
        before_silu = _causal_conv(x, taps, b_conv)
        u = F.silu(before_silu)
        x_dbl = F.linear(u.view(-1, d_inner), w_x)
        dt_low = x_dbl[:, :dt_rank]
        # B and C as (b, l, 1, n): broadcast over channels
        B = x_dbl[:, dt_rank : dt_rank + d_state].view(batch, length, 1, d_state)
        C = x_dbl[:, dt_rank + d_state :].view(batch, length, 1, d_state)
        dt = F.linear(dt_low, w_dt, b_dt)
        delta = F.softplus(dt).view(shape)
        A = -torch.exp(A_log)
        # decay_t = exp(delta_t A); states_t = decay_t * states_{t-1} + delta_t u_t B_t.
        # exp is computed as exp2 of a pre-scaled argument, about twice as fast on CPU.
        decay = torch.mul(delta.unsqueeze(-1), A * _LOG2E)
        # Exponents below that of the smallest normal number give subnormal decay factors,
        # on which CPU arithmetic is 10 to 50 times slower; clamping there changes a factor
        # by less than that number, far below the rounding of the state it multiplies.
        decay = decay.clamp_min_(math.log2(torch.finfo(decay.dtype).tiny)).exp2_()
        delta_u = delta * u
        states = delta_u.unsqueeze(-1) * B
        steps, decays = states.unbind(1), decay.unbind(1)
        for t in range(1, length):
            steps[t].addcmul_(decays[t], steps[t - 1])
        # The contraction over d_state as multiply-and-sum: faster than batched
        # matrix-vector products at this size.
        y = (states * C).sum(-1).addcmul_(u, D).view(-1, d_inner)
        gate = F.silu(z)
        gated = y * gate
        out = F.linear(gated, w_out, b_out)
        ctx.has_bias = (b_in is not None, b_conv is not None, b_out is not None)
        ctx.save_for_backward(
            h, w_in, x, z, taps, before_silu, u, w_x, dt_low, B, C, w_dt, dt, delta, A,
            decay, delta_u, states, y, gate, gated, D, w_out,
        )  # fmt: skip
        return out.view(batch, length, d_model)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        (
            h, w_in, x, z, taps, before_silu, u, w_x, dt_low, B, C, w_dt, dt, delta, A,
            decay, delta_u, states, y, gate, gated, D, w_out,
        ) = ctx.saved_tensors  # fmt: skip
        has_b_in, has_b_conv, has_b_out = ctx.has_bias
        batch, length, d_inner = u.shape
        rows = batch * length

        # out = gated W_out^T + b_out
        grad_out = grad_out.reshape(rows, w_out.shape[0])
        grad_w_out = grad_out.t().mm(gated)
        grad_b_out = grad_out.sum(0) if has_b_out else None
        grad_gated = grad_out.mm(w_out)
        # gated = y * silu(z)
        grad_z = torch.ops.aten.silu_backward(grad_gated * y, z)
        grad_y = grad_gated.mul_(gate).view(batch, length, d_inner)
        # y_t = <states_t, C_t> + D u_t
        grad_D = (grad_y * u).sum((0, 1))
        grad_u = grad_y * D
        grad_C = torch.bmm(grad_y.view(rows, 1, d_inner), states.view(rows, d_inner, C.shape[-1]))
        # Gradient of the state, accumulated backwards in time in place.
        grad_states = grad_y.unsqueeze(-1) * C
        grad_steps, decays = grad_states.unbind(1), decay.unbind(1)
        for t in range(length - 2, -1, -1):
            grad_steps[t].addcmul_(decays[t + 1], grad_steps[t + 1])
        # Through delta_t u_t B_t.
        grad_delta_u = (grad_states * B).sum(-1)
        grad_B = torch.bmm(
            delta_u.view(rows, 1, d_inner), grad_states.view(rows, d_inner, B.shape[-1])
        )
        grad_delta = grad_delta_u * u
        grad_u.addcmul_(grad_delta_u, delta)
        # Through decay_t = exp(delta_t A), which multiplies states_{t-1}: no term at t = 0.
        if length > 1:
            grad_exponent = grad_states[:, 1:].mul_(states[:, :-1]).mul_(decay[:, 1:])
            grad_delta[:, 1:] += (grad_exponent * A).sum(-1)
            grad_A = (grad_exponent * delta[:, 1:].unsqueeze(-1)).sum((0, 1))
        else:
            grad_A = torch.zeros_like(A)
        grad_A_log = grad_A.mul_(A)
        # delta = softplus(dt_low W_dt^T + b_dt)
        grad_dt = torch.ops.aten.softplus_backward(
            grad_delta.view(rows, d_inner), dt, _SOFTPLUS_BETA, _SOFTPLUS_THRESHOLD
        )
        grad_b_dt = grad_dt.sum(0)
        grad_w_dt = grad_dt.t().mm(dt_low)
        # (dt_low, B, C) = u W_x^T
        grad_x_dbl = torch.cat(
            [grad_dt.mm(w_dt), grad_B.view(rows, B.shape[-1]), grad_C.view(rows, C.shape[-1])],
            dim=1,
        )
        grad_w_x = grad_x_dbl.t().mm(u.view(rows, d_inner))
        grad_u.view(rows, d_inner).addmm_(grad_x_dbl, w_x)
        # u = silu(causal_conv(x))
        grad_pre = torch.ops.aten.silu_backward(grad_u, before_silu)
        tap = taps.unbind(0)
        grad_x = grad_pre * tap[-1]
        grad_taps = torch.zeros_like(taps)
        grad_taps[-1] = (grad_pre * x).sum((0, 1))
        for j in range(1, min(len(tap), length)):
            grad_x[:, : length - j].addcmul_(grad_pre[:, j:], tap[-1 - j])
            grad_taps[-1 - j] = (grad_pre[:, j:] * x[:, : length - j]).sum((0, 1))
        grad_b_conv = grad_pre.sum((0, 1)) if has_b_conv else None
        # (x, z) = h W_in^T + b_in
        grad_xz = torch.cat([grad_x.view(rows, d_inner), grad_z], dim=1)
        grad_w_in = grad_xz.t().mm(h)
        grad_b_in = grad_xz.sum(0) if has_b_in else None
        grad_h = grad_xz.mm(w_in).view(batch, length, h.shape[1])
        return (
            grad_h, grad_w_in, grad_b_in, grad_taps.t(), grad_b_conv, grad_w_x, grad_w_dt,
            grad_b_dt, grad_A_log, grad_D, grad_w_out, grad_b_out,
        )  # fmt: skip


def mamba_inner(
    hidden_states: Tensor,
    in_proj_weight: Tensor,
    in_proj_bias: Tensor | None,
    conv_weight: Tensor,
    conv_bias: Tensor | None,
    x_proj_weight: Tensor,
    dt_proj_weight: Tensor,
    dt_proj_bias: Tensor,
    A_log: Tensor,
    D: Tensor,
    out_proj_weight: Tensor,
    out_proj_bias: Tensor | None,
) -> Tensor:
    """Mamba mixer forward, ``(batch, length, d_model) -> same``, as one autograd node.

    The arguments are the mixer's parameters, as ``mamba_ssm``'s ``mamba_inner_fn`` takes
    them, with ``conv_weight`` of shape ``(d_inner, d_conv)``. All tensors must share one
    floating dtype; the sequence must be non-empty.
    """
    return _MambaInnerFn.apply(
        hidden_states,
        in_proj_weight,
        in_proj_bias,
        conv_weight,
        conv_bias,
        x_proj_weight,
        dt_proj_weight,
        dt_proj_bias,
        A_log,
        D,
        out_proj_weight,
        out_proj_bias,
    )
