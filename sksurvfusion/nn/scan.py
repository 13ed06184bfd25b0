"""Pure-PyTorch kernels of the Mamba mixer: selective scan, causal convolution, whole mixer.

Everything here takes batch-first inputs, ``(batch, length, channels)``, with hand-written
backward passes tuned for the short sequences of multi-modal fusion (a handful of tokens)
on CPU. :func:`selective_scan` and :func:`causal_conv1d_silu` are the readable building
blocks of :class:`~sksurvfusion.nn.Mamba`; ``mamba_mixer`` is the whole mixer as one
autograd node, which the module runs while training (see the last section).

Why the selective scan looks the way it does
--------------------------------------------
On CPU its cost is memory traffic over the ``(batch, length, d_state, channels)`` state,
not arithmetic, and Python overhead per op. The fused path is an autograd Function that

- runs the recurrence in place, one ``addcmul_`` per token, with a hand-written backward
  (about a third of the passes over the state that autograd needs for the same loop);
- works on blocks of batch rows whose state stays in cache, in a per-thread workspace
  that is reused from call to call, and recomputes the state in the backward pass instead
  of storing it (as mamba_ssm's CUDA kernel does): fresh buffers of a few MiB cost more in
  page faults than the recomputation, and the memory kept for the backward pass stays
  ``O(batch * length * channels)``;
- lays the state out time-major with ``(d_state, channels)`` per token, so that every
  token's state is one contiguous slab and the contractions over ``d_state`` are batched
  vector-matrix products;
- computes ``exp`` as ``exp2`` of a pre-scaled argument, like the CUDA kernel, which is
  about twice as fast on CPU.

The vectorised alternatives, the quadratic "segment-sum" form (pairwise decays masked to
the lower triangle) and a log-depth (Hillis-Steele) scan, were measured slower at every
length from 5 to 20 for batch 16 and 256: they touch about ``length / 2`` or
``log2(length)`` times more state, and the state passes are the whole cost. The fused path
uses memory linear in ``length`` at any length; so does the plain autograd loop kept as
``method="loop"``. Doing the element-wise work around the scan (softplus, gate, skip)
block by block as well was measured slower: more Python calls than cache misses saved.

Why the fused mixer looks the way it does
-----------------------------------------
At batch 16 a mixer's forward and backward cost as much at batch 1: a few microseconds of
dispatch per tensor operation, some 140 of them, not arithmetic. At batch 256 the passes
over the state dominate. ``mamba_mixer`` therefore runs projections, convolution, scan,
gate and output projection in one forward and one hand-written backward, and

- orders its rows ``(token, batch row)`` and lays the state out ``(length, batch,
  d_state, d_inner)``: each token's state is a contiguous slab, every slice over tokens
  is contiguous (a reduction over two axes of a strided slice ran 20 times slower), and
  every state-sized product broadcasts along contiguous channels;
- stores the state for the backward pass rather than recomputing it (no second ``exp``),
  in buffers from a pool that a training loop reuses from step to step: on the 2-core VM
  where this was tuned, a state-sized product written to fresh memory took up to 15 times
  as long as to a reused buffer;
- writes the causal convolution as a product with its ``(length, length)`` Toeplitz
  matrix per channel, two operations each way instead of two per tap;
- skips the first token's decay, which multiplies the zero state ``h_{-1}``.

Without gradients nothing needs the state of every token: ``mamba_mixer_inference``
runs the same arithmetic token by token over blocks of rows whose state stays in cache,
and reads each token's output off its state before the next token overwrites it.

Measured (forward and backward of one mixer, 5 tokens, ``d_model`` 32, one thread, on a
busy 2-core VM) against the previous fused mixer, which kept the state ``(..., d_inner,
d_state)`` and so broadcast along its 16 states: equal at batch 1, 3 to 5 % faster at
batch 16, where the count of operations is the floor, 35 % faster at batch 64 and about
half the time at batch 256; 10 to 20 % faster than the blocked scan, which ran batch 256
before.
"""

from __future__ import annotations

import functools
import math
import threading

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from sksurvfusion.nn._validation import check_choice

__all__ = ["causal_conv1d_silu", "selective_scan"]

# Elements of state per block of batch rows (2**18 float32 is 1 MiB per buffer): measured
# fastest on a 2-core AMD EPYC VM; smaller blocks pay Python overhead per op, larger
# ones spill the cache.
_BLOCK_ELEMENTS = 2**18

# exp(x) = exp2(x log2 e), as in mamba_ssm's CUDA kernel.
_LOG2E = 1.4426950408889634

# F.softplus defaults, which mamba_ssm uses.
_SOFTPLUS_BETA, _SOFTPLUS_THRESHOLD = 1.0, 20.0


class _Block:
    """Contiguous time-major views ``(length, rows, d_state, channels)`` for one block size.

    Building the views (and the per-step lists) once per block size, rather than once per
    block, saves Python overhead that at these sizes costs as much as the arithmetic.
    """

    def __init__(self, buffers: list[Tensor], states: Tensor, shape: tuple[int, ...]):
        length, rows, d_state, channels = self.shape = shape
        size = length * rows * d_state * channels
        # h_{-1}, ..., h_{l-1}: one more step, zero, so that h_{t-1} is a plain slice.
        self.states = states[: size + size // length].view(length + 1, rows, d_state, channels)
        self.current, self.previous = self.states[1:], self.states[:-1]
        self.steps = self.states.unbind(0)
        self.others = [buffer[:size].view(self.shape) for buffer in buffers]
        self.decay = self.others[0]
        self.decays = self.decay.unbind(0)


# Large fresh buffers are usually handed back to the operating system when freed, and
# writing them again costs a page fault per 4 KiB page: measured as much as the scan
# itself at these sizes. Each thread therefore keeps its scan workspace from call to call.
# The workspace is only used inside one forward or one backward call, never across calls,
# so reuse is safe; it is capped so that a huge batch cannot pin memory.
_WORKSPACE = threading.local()
_MAX_CACHED_WORKSPACE = 2**23  # elements per buffer (32 MiB of float32)


def _workspace_memory(like: Tensor, numel: int) -> Tensor:
    if like.device.type != "cpu" or numel > _MAX_CACHED_WORKSPACE:
        return like.new_empty(numel)
    # A buffer made under inference mode cannot be written outside it, hence the key.
    key = (like.dtype, torch.is_inference_mode_enabled())
    cache = _WORKSPACE.__dict__.setdefault("buffers", {})
    buffer = cache.get(key)
    if buffer is None or buffer.numel() < numel:
        buffer = cache[key] = like.new_empty(numel)
    return buffer[:numel]


class _ScanWorkspace:
    """Buffers for one block of batch rows, reused by every block of a call."""

    def __init__(
        self, like: Tensor, batch: int, length: int, d_state: int, channels: int, n_buffers: int
    ):
        # Balanced blocks of about _BLOCK_ELEMENTS state elements each.
        row_elements = length * d_state * channels
        n_blocks = max(1, round(batch * row_elements / _BLOCK_ELEMENTS))
        self.rows = rows = -(-batch // n_blocks)
        self.length, self.state_shape = length, (d_state, channels)
        step = rows * d_state * channels
        memory = _workspace_memory(like, (length + 1 + n_buffers * length) * step)
        self._states = memory[: (length + 1) * step]
        # h_{-1} of every block lies in the first full-block step. Only the last block can
        # be smaller, and only it can write there, so zeroing once per call is enough.
        self._states[:step].zero_()
        rest = memory[(length + 1) * step :]
        self._buffers = [
            rest[i * length * step : (i + 1) * length * step] for i in range(n_buffers)
        ]
        self._blocks: dict[int, _Block] = {}

    def blocks(self, batch: int):
        """Yield ``(slice of batch rows, _Block)`` covering the batch."""
        for start in range(0, batch, self.rows):
            rows = min(self.rows, batch - start)
            if rows not in self._blocks:
                shape = (self.length, rows, *self.state_shape)
                self._blocks[rows] = _Block(self._buffers, self._states, shape)
            yield slice(start, start + rows), self._blocks[rows]


def _run_states(delta, delta_u, At2, B, block: _Block, clamp: float | None) -> None:
    """Fill ``block.decay`` = exp(delta A) and ``block.states`` = h_{-1..l-1} in place.

    Time-major, broadcast-ready block inputs: delta, delta_u (l, r, 1, d); B (l, r, n, 1);
    At2 = A^T log2(e) (n, d).
    """
    decay = torch.mul(delta, At2, out=block.decay)
    if clamp is not None:
        decay.clamp_min_(clamp)
    decay.exp2_()
    torch.mul(delta_u, B, out=block.current)
    steps = block.steps
    for t, step_decay in enumerate(block.decays):
        steps[t + 1].addcmul_(step_decay, steps[t])


def _vec_times_state(vectors: Tensor, states: Tensor) -> Tensor:
    """``sum_n vectors[t, b, n] * states[t, b, n, d]`` as one batched matmul: (l, r, d)."""
    length, rows, n, d = states.shape
    flat = states.view(length * rows, n, d)
    return torch.bmm(vectors.reshape(length * rows, 1, n), flat).view(length, rows, d)


def _state_times_vec(states: Tensor, vectors: Tensor) -> Tensor:
    """``sum_d states[t, b, n, d] * vectors[t, b, d]``: (l, r, n).

    Written as a vector times a transposed matrix, which batched matmul runs several times
    faster than a matrix times a vector.
    """
    length, rows, n, d = states.shape
    transposed = states.view(length * rows, n, d).transpose(1, 2)
    return torch.bmm(vectors.reshape(length * rows, 1, d), transposed).view(length, rows, n)


def _exponent_clamp(delta: Tensor, A: Tensor) -> float | None:
    """Lowest exponent of exp2 worth computing, or None when none can go below it.

    Exponents below that of the smallest normal number give subnormals, on which CPU
    arithmetic is 10 to 50 times slower; clamping there changes a decay factor by less
    than that number, far below the rounding of the state. With usual step sizes no
    exponent comes near, and the clamp is skipped.
    """
    lowest = delta.max().clamp_min(0) * A.min().clamp_max(0) * _LOG2E
    floor = math.log2(torch.finfo(A.dtype).tiny)
    return floor if bool(lowest < floor) else None


def _prepare(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, n_buffers: int):
    """Per-call constants and broadcast-ready, time-major views of the inputs."""
    batch, length, channels = u.shape
    d_state = A.shape[1]
    # (n, d) contiguous: broadcasting a transposed view would not vectorise over d.
    At = A.t().contiguous()
    At2 = At * _LOG2E
    work = _ScanWorkspace(u, batch, length, d_state, channels, n_buffers)
    delta_u = delta * u
    inputs = (
        delta.transpose(0, 1).unsqueeze(2),
        delta_u.transpose(0, 1).unsqueeze(2),
        B.transpose(0, 1).unsqueeze(-1),
    )
    return At, At2, work, delta_u, inputs


def _scan_forward(u, delta, A, B, C, clamp: float | None) -> Tensor:
    """``y_t = <h_t, C_t>`` for batch-first inputs; returns (b, l, d)."""
    _, At2, work, _, (delta_e, delta_u_e, B_e) = _prepare(u, delta, A, B, 1)
    C_t = C.transpose(0, 1)
    y = torch.empty_like(u)
    for rows, block in work.blocks(u.shape[0]):
        _run_states(delta_e[:, rows], delta_u_e[:, rows], At2, B_e[:, rows], block, clamp)
        y[rows] = _vec_times_state(C_t[:, rows], block.current).transpose(0, 1)
    return y


def _scan_backward(grad_y, u, delta, A, B, C, clamp: float | None):
    """Gradients of ``_scan_forward`` with respect to u, delta, A, B and C."""
    At, At2, work, delta_u, (delta_e, delta_u_e, B_e) = _prepare(u, delta, A, B, 3)
    batch, length, channels = u.shape
    u_t, delta_t, delta_u_t = u.transpose(0, 1), delta.transpose(0, 1), delta_u.transpose(0, 1)
    B_t, C_e = B.transpose(0, 1), C.transpose(0, 1).unsqueeze(-1)
    grad_y_t = grad_y.transpose(0, 1)
    grad_y_e = grad_y_t.unsqueeze(2)
    # Gradients are filled time-major, block by block, and transposed back at the end.
    grad_u = u.new_empty(length, batch, channels)
    grad_delta = torch.empty_like(grad_u)
    grad_B = B.new_empty(length, batch, B.shape[-1])
    grad_C = torch.empty_like(grad_B)
    grad_At = torch.zeros_like(At)
    for rows, block in work.blocks(batch):
        _, grad_states, scratch = block.others
        delta_b = delta_e[:, rows]
        _run_states(delta_b, delta_u_e[:, rows], At2, B_e[:, rows], block, clamp)
        # grad_h_t = C_t grad_y_t + exp(delta_{t+1} A) grad_h_{t+1}, backwards in place
        torch.mul(C_e[:, rows], grad_y_e[:, rows], out=grad_states)
        grad_steps, decays = grad_states.unbind(0), block.decays
        for t in range(length - 2, -1, -1):
            grad_steps[t].addcmul_(decays[t + 1], grad_steps[t + 1])
        grad_C[:, rows] = _state_times_vec(block.current, grad_y_t[:, rows])
        grad_B[:, rows] = _state_times_vec(grad_states, delta_u_t[:, rows])
        grad_delta_u = _vec_times_state(B_t[:, rows], grad_states)
        torch.mul(grad_delta_u, delta_t[:, rows], out=grad_u[:, rows])
        # Through exp(delta_t A) h_{t-1}; grad_states is reused for the product.
        through_decay = grad_states.mul_(block.previous).mul_(block.decay)
        grad_delta_b = torch.mul(through_decay, At, out=scratch).sum(2)
        grad_delta[:, rows] = grad_delta_b.addcmul_(grad_delta_u, u_t[:, rows])
        grad_At += through_decay.mul_(delta_b).sum((0, 1))
    return (
        grad_u.transpose(0, 1),
        grad_delta.transpose(0, 1),
        grad_At.t(),
        grad_B.transpose(0, 1),
        grad_C.transpose(0, 1),
    )


class _SelectiveScanFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        if delta_bias is not None:
            delta = delta + delta_bias
        before_softplus = delta if delta_softplus else None
        if delta_softplus:
            delta = F.softplus(delta)
        ctx.clamp = _exponent_clamp(delta, A)
        y = _scan_forward(u, delta, A, B, C, ctx.clamp)
        if D is not None:
            y.addcmul_(u, D)
        gate = None if z is None else F.silu(z)
        ctx.has_bias = delta_bias is not None
        ctx.save_for_backward(u, delta, A, B, C, D, z, gate, y, before_softplus)
        return y if z is None else y * gate

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        u, delta, A, B, C, D, z, gate, y, before_softplus = ctx.saved_tensors
        grad_z = None
        if z is not None:
            grad_z = torch.ops.aten.silu_backward(grad_out * y, z)
            grad_y = grad_out * gate
        else:
            grad_y = grad_out.contiguous()
        grads = _scan_backward(grad_y, u, delta, A, B, C, ctx.clamp)
        grad_u, grad_delta, grad_A, grad_B, grad_C = grads
        grad_D = None
        if D is not None:
            grad_u = grad_u.addcmul(grad_y, D)
            grad_D = (grad_y * u).sum((0, 1))
        if before_softplus is not None:
            grad_delta = torch.ops.aten.softplus_backward(
                grad_delta, before_softplus, _SOFTPLUS_BETA, _SOFTPLUS_THRESHOLD
            )
        grad_bias = grad_delta.sum((0, 1)) if ctx.has_bias else None
        return grad_u, grad_delta, grad_A, grad_B, grad_C, grad_D, grad_z, grad_bias, None


def _selective_scan_loop(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    if delta_bias is not None:
        delta = delta + delta_bias
    if delta_softplus:
        delta = F.softplus(delta)
    decay = torch.exp(delta.unsqueeze(-1) * A).unbind(1)
    inputs = ((delta * u).unsqueeze(-1) * B.unsqueeze(2)).unbind(1)
    state = torch.zeros_like(inputs[0])
    states = []
    for step_decay, step_input in zip(decay, inputs, strict=True):
        state = torch.addcmul(step_input, step_decay, state)
        states.append(state)
    y = torch.linalg.vecdot(torch.stack(states, 1), C.unsqueeze(2))
    if D is not None:
        y = y + u * D
    return y if z is None else y * F.silu(z)


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    *,
    method: str = "fused",
) -> Tensor:
    r"""Selective scan of Mamba (v1), batch-first.

    The arguments are those of ``mamba_ssm``'s ``selective_scan_fn`` with the length axis
    second instead of last. With :math:`\Delta = \operatorname{softplus}(\delta + b)` (or
    :math:`\delta + b` without softplus), for every batch row and channel:

    .. math::

        h_t = \exp(\Delta_t A) \odot h_{t-1} + \Delta_t\, u_t\, B_t, \qquad h_{-1} = 0,

        y_t = \left(\langle h_t, C_t \rangle + D\, u_t\right) \operatorname{SiLU}(z_t).

    Parameters
    ----------
    u, delta : Tensor of shape (batch, length, channels)
        Input and step size.
    A : Tensor of shape (channels, d_state)
        Diagonal state matrix per channel (negative for a stable scan).
    B, C : Tensor of shape (batch, length, d_state)
        Input-dependent input and output projections.
    D : Tensor of shape (channels,), optional
        Skip connection.
    z : Tensor of shape (batch, length, channels), optional
        Gate.
    delta_bias : Tensor of shape (channels,), optional
        Added to ``delta``.
    delta_softplus : bool, default=False
        Apply softplus to ``delta + delta_bias``.
    method : {"fused", "loop"}, default="fused"
        ``"fused"``: in-place recurrence with a hand-written backward (fastest; no double
        backward). ``"loop"``: the same recurrence in plain autograd ops, which supports
        higher-order gradients. Both use memory linear in ``length``.

    Returns
    -------
    y : Tensor of shape (batch, length, channels)

    Examples
    --------
    >>> import torch
    >>> from sksurvfusion.nn import selective_scan
    >>> batch, length, channels, d_state = 2, 5, 8, 4
    >>> u, delta = torch.randn(batch, length, channels), torch.rand(batch, length, channels)
    >>> A = -torch.rand(channels, d_state)
    >>> B, C = torch.randn(batch, length, d_state), torch.randn(batch, length, d_state)
    >>> y = selective_scan(u, delta, A, B, C)
    >>> y.shape
    torch.Size([2, 5, 8])
    >>> torch.allclose(y, selective_scan(u, delta, A, B, C, method="loop"), atol=1e-5)
    True
    """
    check_choice("method", method, ("fused", "loop"))
    if u.shape[0] == 0 or u.shape[1] == 0:
        return u * 0.0  # nothing to scan; still part of the graph
    if method == "loop":
        return _selective_scan_loop(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    return _SelectiveScanFn.apply(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus))


def _causal_conv(x: Tensor, taps: Tensor, bias: Tensor | None) -> Tensor:
    # taps[-1] multiplies the current token, taps[-1 - j] the token j steps back; each tap
    # is a contiguous row, so the broadcast multiply-adds vectorise over channels.
    length, taps = x.shape[1], taps.unbind(0)
    out = x * taps[-1] if bias is None else torch.addcmul(bias, x, taps[-1])
    for j in range(1, min(len(taps), length)):
        out[:, j:].addcmul_(x[:, : length - j], taps[-1 - j])
    return out


def _causal_conv_backward(grad: Tensor, x: Tensor, taps: Tensor, out: Tensor | None = None):
    """Gradients of ``_causal_conv`` with respect to ``x`` (written to ``out`` if given) and
    ``taps``."""
    length, width = x.shape[1], taps.shape[0]
    grad_x = torch.mul(grad, taps[-1], out=out)
    grad_taps = torch.empty_like(taps)
    torch.sum(grad * x, (0, 1), out=grad_taps[-1])
    for j in range(1, width):
        if j < length:
            grad_x[:, : length - j].addcmul_(grad[:, j:], taps[-1 - j])
            torch.sum(grad[:, j:] * x[:, : length - j], (0, 1), out=grad_taps[-1 - j])
        else:
            grad_taps[-1 - j].zero_()
    return grad_x, grad_taps


class _CausalConvSiLUFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        taps = weight.t().contiguous()  # (width, channels)
        before_silu = _causal_conv(x, taps, bias)
        ctx.has_bias = bias is not None
        ctx.save_for_backward(x, taps, before_silu)
        return F.silu(before_silu)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, taps, before_silu = ctx.saved_tensors
        grad = torch.ops.aten.silu_backward(grad_out, before_silu)
        grad_x, grad_taps = _causal_conv_backward(grad, x, taps)
        grad_bias = grad.sum((0, 1)) if ctx.has_bias else None
        return grad_x, grad_taps.t(), grad_bias


def causal_conv1d_silu(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    r"""Depthwise causal 1-D convolution followed by SiLU, batch-first.

    Equals ``F.silu(F.conv1d(x.transpose(1, 2), weight.unsqueeze(1), bias,
    padding=width - 1, groups=channels)[..., :length].transpose(1, 2))`` without the
    transposes, and with a hand-written backward.

    Parameters
    ----------
    x : Tensor of shape (batch, length, channels)
    weight : Tensor of shape (channels, width)
        ``weight[:, -1]`` multiplies the current token.
    bias : Tensor of shape (channels,), optional

    Returns
    -------
    Tensor of shape (batch, length, channels)

    Examples
    --------
    >>> import torch
    >>> import torch.nn.functional as F
    >>> from sksurvfusion.nn.scan import causal_conv1d_silu
    >>> x, weight = torch.randn(2, 5, 3), torch.randn(3, 4)
    >>> y = causal_conv1d_silu(x, weight)
    >>> by_conv1d = F.silu(
    ...     F.conv1d(x.transpose(1, 2), weight.unsqueeze(1), padding=3, groups=3)[..., :5]
    ... ).transpose(1, 2)
    >>> torch.allclose(y, by_conv1d, atol=1e-6)
    True
    """
    return _CausalConvSiLUFn.apply(x, weight, bias)


# ----------------------------------------------------------------------------------------
# The whole mixer as one autograd Function, for short sequences
# ----------------------------------------------------------------------------------------

# Longest sequence run by the fused mixer. Fusion sequences are far shorter; its
# convolution costs length / width times more than the blocked path's, and it stores
# ``length`` times the state of one token. Measured against the blocked path (forward and
# backward, batch 16): as fast at 16 tokens, 1.8 times slower at 32.
FUSED_MAX_LENGTH = 16

# Largest state, batch * length * d_inner * d_state elements, run by the fused mixer;
# beyond it the blocked scan, which keeps one block of batch rows in cache and stores no
# state, is used. Measured on a 2-core VM, fused against blocked (forward and backward,
# 5 tokens, d_inner 64, d_state 16): 0.9 times the time at batch 256 and 512, 1.5 to 1.9
# times at 1024 to 4096, where the stored states outgrow the cache and the pool.
FUSED_MAX_STATE = 2**21


class _BufferPool:
    """Free state-sized buffers of the fused mixer, kept for the next call.

    A fresh buffer of a few MiB is mapped anew by the allocator, and its first writing
    costs a page fault per 4 KiB page, which can cost more than the pass that fills it.
    The fused mixer takes its state buffers from here and hands them back (through
    :class:`_Lease`) once the graph that needs them is freed, so that a training loop
    reuses the same memory from step to step. Buffers are kept by ``kind``, so that a
    caller can rely on what it left in its own kind. The pool is shared by threads (a lock
    guards it) and keeps at most ``max_elements`` free elements.
    """

    def __init__(self, max_elements: int) -> None:
        self.max_elements = max_elements
        self._free: dict[tuple, list[Tensor]] = {}
        self._n_free = 0
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, ...], like: Tensor, kind: str = "") -> tuple[Tensor, bool]:
        """A buffer of ``shape`` with the dtype and device of ``like``, and whether it is
        new (else it holds what its last user of the same ``kind`` left in it)."""
        key = (kind, like.dtype, like.device, math.prod(shape))
        with self._lock:
            free = self._free.get(key)
            if free:
                self._n_free -= key[-1]
                return free.pop().view(shape), False
        return like.new_empty(shape), True

    def give(self, kind: str, *buffers: Tensor) -> None:
        """Keep ``buffers`` of ``kind`` for reuse; no one else may hold them any more."""
        with self._lock:
            for buffer in buffers:
                if self._n_free + buffer.numel() <= self.max_elements:
                    key = (kind, buffer.dtype, buffer.device, buffer.numel())
                    self._free.setdefault(key, []).append(buffer)
                    self._n_free += buffer.numel()


# 2**24 elements, 64 MiB of float32: the buffers of two training steps of a two-layer
# adapter at the largest fused state (a loop's previous graph is often freed only after
# the next forward pass).
_STATE_POOL = _BufferPool(2**24)


class _Lease:
    """Buffers of one fused-mixer call, handed back to the pool with the autograd graph.

    The buffers live as long as the node of the graph that holds this lease, so a second
    backward pass through a retained graph still finds them intact.
    """

    def __init__(self, pool: _BufferPool, kind: str, *buffers: Tensor) -> None:
        self.pool, self.kind, self.buffers = pool, kind, buffers

    def __del__(self) -> None:
        self.pool.give(self.kind, *self.buffers)


@functools.lru_cache(maxsize=64)
def _toeplitz_index(length: int, width: int, channels: int, device: torch.device) -> Tensor:
    """Flat index, shape ``(length, length, 1, channels)``, into taps ``(channels, width +
    1)`` whose last column is zero: at ``[t, s, 0, c]``, the tap of channel ``c`` that
    token ``s`` meets in output ``t`` (the zero one where it meets none)."""
    t = torch.arange(length, device=device)
    lag = t[:, None] - t[None, :]
    tap = torch.where((lag >= 0) & (lag < width), width - 1 - lag, width)
    channel = torch.arange(channels, device=device) * (width + 1)
    return (tap[:, :, None, None] + channel).contiguous()


def _mixer_inputs(h, w_in, b_in, w_conv, b_conv, w_x, w_dt, b_dt, d_state: int):
    """What the mixer computes before its scan, time-major: ``h`` (batch, length,
    d_model) as rows ``(token, batch row)``, and from it ``x`` (length, batch, d_inner),
    the gate ``z``, the convolution's Toeplitz ``index`` and matrix, its output before
    the SiLU and ``u`` after it, ``dt_low``, ``B``, ``C``, ``dt`` and ``delta =
    softplus(dt)``, all but ``x`` as rows."""
    d_inner = w_x.shape[1]
    dt_rank = w_dt.shape[1]
    batch, length, d_model = h.shape
    rows = batch * length
    h = h.transpose(0, 1).reshape(rows, d_model)
    xz = F.linear(h, w_in, b_in)
    x, z = xz[:, :d_inner].view(length, batch, d_inner), xz[:, d_inner:]
    # toeplitz[t, s] = taps of token s in output t, zero unless 0 <= t - s < width
    width = w_conv.shape[-1]
    index = _toeplitz_index(length, width, d_inner, h.device)
    toeplitz = F.pad(w_conv.view(d_inner, width), (0, 1)).take(index)
    before_silu = torch.sum(toeplitz * x, 1)
    if b_conv is not None:
        before_silu += b_conv
    u = F.silu(before_silu).view(rows, d_inner)
    x_dbl = F.linear(u, w_x)
    dt_low = x_dbl[:, :dt_rank]
    B = x_dbl[:, dt_rank : dt_rank + d_state]
    C = x_dbl[:, dt_rank + d_state :]
    dt = F.linear(dt_low, w_dt, b_dt)
    delta = F.softplus(dt)
    return h, x, z, index, toeplitz, before_silu, u, dt_low, B, C, dt, delta


class _MambaMixerFn(torch.autograd.Function):
    """The Mamba mixer as one autograd node, time-major inside.

    The rows of every projection are ordered ``(token, batch row)``, so that the tokens of
    the state, laid out ``(length, batch, d_state, d_inner)``, are contiguous slabs:
    slices over tokens stay contiguous and the recurrence runs in place, slab by slab.
    Channels are innermost, so every state-sized product broadcasts vectors along
    contiguous rows and the contractions over ``d_state`` are batched vector-matrix
    products. The state is stored for the backward pass (in pooled buffers), not
    recomputed. The causal convolution is a product with its ``(length, length)``
    Toeplitz matrix per channel: two operations each way for any width.
    """

    @staticmethod
    def forward(ctx, h, w_in, b_in, w_conv, b_conv, w_x, w_dt, b_dt, A_log, D, w_out, b_out):
        d_inner, d_state = A_log.shape
        batch, length, d_model = h.shape
        rows = batch * length
        h, x, z, index, toeplitz, before_silu, u, dt_low, B, C, dt, delta = _mixer_inputs(
            h, w_in, b_in, w_conv, b_conv, w_x, w_dt, b_dt, d_state
        )
        At = torch.exp(A_log.t().contiguous()).neg_()  # A^T, (d_state, d_inner)
        # decay_t = exp(delta_t A) as exp2 of a pre-scaled argument, about twice as fast.
        # Exponents below that of the smallest normal number would give subnormal
        # factors, on which CPU arithmetic is 10 to 50 times slower; clamping there changes
        # a factor by less than that number, far below the rounding of the state.
        shape = (length, batch, d_state, d_inner)
        # h_{-1} = 0: the first token needs no decay, and decay[0] is left unwritten.
        decay, _ = _STATE_POOL.take(shape, u, "state")
        later = decay[1:]
        torch.mul(delta.view(length, batch, 1, d_inner)[1:], At * _LOG2E, out=later)
        later.clamp_min_(math.log2(torch.finfo(decay.dtype).tiny)).exp2_()
        # states_t = decay_t * states_{t-1} + delta_t u_t B_t, states_0 = delta_0 u_0 B_0
        delta_u = delta * u
        states, _ = _STATE_POOL.take(shape, u, "state")
        torch.mul(delta_u.view(length, batch, 1, d_inner), B.view(*shape[:3], 1), out=states)
        steps, decays = states.unbind(0), decay.unbind(0)
        for t in range(1, length):
            steps[t].addcmul_(decays[t], steps[t - 1])
        flat_states = states.view(rows, d_state, d_inner)
        y = torch.bmm(C.view(rows, 1, d_state), flat_states).view(rows, d_inner)
        y.addcmul_(u, D)
        gate = F.silu(z)
        gated = y * gate
        out = F.linear(gated, w_out, b_out)
        ctx.has_bias = (b_in is not None, b_conv is not None, b_out is not None)
        ctx.conv_shape = w_conv.shape
        ctx.lease = _Lease(_STATE_POOL, "state", decay, states)
        # Intermediates are kept as attributes: cheaper to unpack than saved tensors,
        # which are for inputs and outputs.
        ctx.save_for_backward(w_in, w_x, w_dt, D, w_out)
        ctx.intermediates = (
            h, x, z, index, toeplitz, before_silu, u, dt_low, B, C, dt, delta, At, delta_u,
            y, gate, gated,
        )  # fmt: skip
        # batch-first in memory too: what follows (a dropout mask, say) may depend on it
        return out.view(length, batch, d_model).transpose(0, 1).contiguous()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        w_in, w_x, w_dt, D, w_out = ctx.saved_tensors
        (
            h, x, z, index, toeplitz, before_silu, u, dt_low, B, C, dt, delta, At, delta_u,
            y, gate, gated,
        ) = ctx.intermediates  # fmt: skip
        decay, states = ctx.lease.buffers
        has_b_in, has_b_conv, has_b_out = ctx.has_bias
        length, batch, d_state, d_inner = decay.shape
        rows = batch * length

        # out = gated W_out^T + b_out
        grad_out = grad_out.transpose(0, 1).reshape(rows, w_out.shape[0])
        grad_w_out = grad_out.t().mm(gated)
        grad_b_out = grad_out.sum(0) if has_b_out else None
        grad_gated = grad_out.mm(w_out)
        # gated = y * silu(z); the gradients of x and z are written side by side
        grad_xz = h.new_empty(rows, 2 * d_inner)
        torch.ops.aten.silu_backward.grad_input(grad_gated * y, z, grad_input=grad_xz[:, d_inner:])
        grad_y = grad_gated.mul_(gate)
        # y_t = <states_t, C_t> + D u_t
        grad_D = (grad_y * u).sum(0)
        grad_u = grad_y * D
        flat_states = states.view(rows, d_state, d_inner)
        grad_C = torch.bmm(grad_y.view(rows, 1, d_inner), flat_states.transpose(1, 2))
        # Gradient of the state, accumulated backwards in time in place.
        grad_states, _ = _STATE_POOL.take(decay.shape, decay, "state")
        torch.mul(
            C.view(length, batch, d_state, 1),
            grad_y.view(length, batch, 1, d_inner),
            out=grad_states,
        )
        grad_steps, decays = grad_states.unbind(0), decay.unbind(0)
        for t in range(length - 2, -1, -1):
            grad_steps[t].addcmul_(decays[t + 1], grad_steps[t + 1])
        # Through delta_t u_t B_t.
        flat_grad_states = grad_states.view(rows, d_state, d_inner)
        grad_delta_u = torch.bmm(B.view(rows, 1, d_state), flat_grad_states).view(rows, d_inner)
        grad_B = torch.bmm(delta_u.view(rows, 1, d_inner), flat_grad_states.transpose(1, 2))
        grad_delta = grad_delta_u * u
        grad_u.addcmul_(grad_delta_u, delta)
        # Through decay_t = exp(delta_t A), which multiplies states_{t-1} from t = 1 on.
        # The exponent's gradient times A gives that of delta, and times delta that of
        # A_log (A = -exp(A_log)).
        through = grad_states[1:].mul_(states[:-1]).mul_(decay[1:]).mul_(At)
        grad_delta.view(length, batch, d_inner)[1:] += through.sum(2)
        through.mul_(delta.view(length, batch, 1, d_inner)[1:])
        grad_A_log = through.view(-1, d_state * d_inner).sum(0).view(d_state, d_inner).t()
        _STATE_POOL.give("state", grad_states)
        # delta = softplus(dt_low W_dt^T + b_dt)
        grad_dt = torch.ops.aten.softplus_backward(
            grad_delta, dt, _SOFTPLUS_BETA, _SOFTPLUS_THRESHOLD
        )
        grad_b_dt = grad_dt.sum(0)
        grad_w_dt = grad_dt.t().mm(dt_low)
        # (dt_low, B, C) = u W_x^T
        grad_x_dbl = torch.cat(
            [grad_dt.mm(w_dt), grad_B.view(rows, d_state), grad_C.view(rows, d_state)], dim=1
        )
        grad_w_x = grad_x_dbl.t().mm(u)
        grad_u.addmm_(grad_x_dbl, w_x)
        # u = silu(sum_s toeplitz[t, s] x_s + b_conv)
        grad_pre = torch.ops.aten.silu_backward(grad_u, before_silu.view(rows, d_inner))
        grad_pre = grad_pre.view(length, 1, batch, d_inner)
        grad_x = grad_xz[:, :d_inner].view(length, batch, d_inner)
        torch.sum(toeplitz * grad_pre, 0, out=grad_x)
        grad_toeplitz = torch.sum(grad_pre * x, 2)
        width = ctx.conv_shape[-1]
        grad_taps = grad_toeplitz.new_zeros(d_inner, width + 1)
        grad_taps.view(-1).index_add_(0, index.view(-1), grad_toeplitz.view(-1))
        grad_w_conv = grad_taps[:, :width].reshape(ctx.conv_shape)
        grad_b_conv = grad_pre.sum((0, 1, 2)) if has_b_conv else None
        # (x, z) = h W_in^T + b_in
        grad_w_in = grad_xz.t().mm(h)
        grad_b_in = grad_xz.sum(0) if has_b_in else None
        grad_h = grad_xz.mm(w_in).view(length, batch, h.shape[1]).transpose(0, 1)
        return (
            grad_h, grad_w_in, grad_b_in, grad_w_conv, grad_b_conv, grad_w_x, grad_w_dt,
            grad_b_dt, grad_A_log, grad_D, grad_w_out, grad_b_out,
        )  # fmt: skip


def mamba_mixer(
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
    them, with ``conv_weight`` of shape ``(d_inner, 1, d_conv)`` (that of ``Conv1d``) or
    ``(d_inner, d_conv)``. All tensors must share one floating dtype; the batch and the
    sequence must be non-empty. No higher-order gradients.
    """
    return _MambaMixerFn.apply(
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


def mamba_mixer_inference(hidden_states: Tensor, *params: Tensor | None) -> Tensor:
    """``mamba_mixer`` without gradients: the same arithmetic, keeping one token's state.

    Training stores the state of every token for the backward pass; here the recurrence
    runs token by token over blocks of about ``_BLOCK_ELEMENTS`` state elements, whose
    state and decay stay in cache, and each token's output is read off its state before
    the next overwrites it. ``h_{-1} = 0``, so the first token needs no decay: a fifth
    fewer ``exp`` over the state at 5 tokens. Measured on 2 cores (5 tokens, ``d_model``
    32, 1,489 rows): 14 ms against 23 ms for the blocked scan it replaces in inference.
    Takes the arguments of ``mamba_mixer``, in its order; run it with gradients off.
    """
    (
        in_proj_weight, in_proj_bias, conv_weight, conv_bias, x_proj_weight, dt_proj_weight,
        dt_proj_bias, A_log, D, out_proj_weight, out_proj_bias,
    ) = params  # fmt: skip
    d_inner, d_state = A_log.shape
    batch, length, d_model = hidden_states.shape
    rows = batch * length
    conv_weight = conv_weight.reshape(d_inner, -1)
    _, _, z, _, _, _, u, _, B, C, _, delta = _mixer_inputs(
        hidden_states, in_proj_weight, in_proj_bias, conv_weight, conv_bias,
        x_proj_weight, dt_proj_weight, dt_proj_bias, d_state,
    )  # fmt: skip
    At = torch.exp(A_log.t().contiguous()).neg_()  # A^T, (d_state, d_inner)
    clamp = _exponent_clamp(delta, At)
    At2 = At.mul_(_LOG2E)
    B = B.view(length, batch, d_state, 1)
    C = C.view(length, batch, 1, d_state)
    delta_u = (delta * u).view(length, batch, 1, d_inner)
    delta = delta.view(length, batch, 1, d_inner)
    y = u.new_empty(length, batch, d_inner)
    block = max(1, min(batch, _BLOCK_ELEMENTS // (d_state * d_inner)))
    states, decays = u.new_empty(2, block, d_state, d_inner).unbind(0)
    for start in range(0, batch, block):
        part = slice(start, min(start + block, batch))
        state, decay = states[: part.stop - start], decays[: part.stop - start]
        torch.mul(B[0, part], delta_u[0, part], out=state)
        torch.bmm(C[0, part], state, out=y[0, part].unsqueeze(1))
        for t in range(1, length):
            torch.mul(delta[t, part], At2, out=decay)
            if clamp is not None:
                decay.clamp_min_(clamp)
            state.mul_(decay.exp2_()).addcmul_(B[t, part], delta_u[t, part])
            torch.bmm(C[t, part], state, out=y[t, part].unsqueeze(1))
    y = y.view(rows, d_inner).addcmul_(u, D).mul_(F.silu(z))
    out = F.linear(y, out_proj_weight, out_proj_bias)
    return out.view(length, batch, d_model).transpose(0, 1).contiguous()
