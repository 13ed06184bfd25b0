"""Forward + backward time of the fusion adapters and of selective-scan variants on CPU.

1. Adapters: one training step (forward, loss, backward; no optimiser) of each adapter of
   ``sksurvfusion.nn`` on a batch of modality tokens, with the ratio of the Mamba adapter
   to the Transformer adapter at the same ``d_model`` (target: at most 1.5).
2. Selective scan (``--scans``): the fused scan of ``sksurvfusion.nn.scan`` against the
   plain autograd loop and two vectorised forms written here, the quadratic "segment-sum"
   form and a log-depth (Hillis-Steele) scan, at the short lengths of modality fusion.

Variants take turns, one step each, so that a change of machine load during the
measurement affects all of them alike; each cell is a median over many steps.

    python benchmarks/bench_nn.py [--threads 1] [--clock cpu] [--scans]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from sksurvfusion.nn import MambaAdapter, MLPAdapter, TransformerAdapter, selective_scan

ADAPTERS = ("mamba", "transformer", "mlp")
SCANS = ("fused", "loop", "segment-sum", "hillis-steele")


def make_adapter(name: str, d_model: int, n_layers: int, n_tokens: int) -> torch.nn.Module:
    if name == "mamba":
        return MambaAdapter(d_model, n_layers=n_layers, mamba_backend="torch")
    if name == "transformer":
        return TransformerAdapter(d_model, n_layers=n_layers)
    return MLPAdapter(d_model, n_tokens)


def interleaved_medians(
    steps: dict[str, Callable[[], None]], *, min_time: float, min_reps: int, clock
) -> dict[str, float]:
    """Median seconds of each step, the steps taking turns."""
    for step in steps.values():
        for _ in range(5):  # warm-up
            step()
    times = {name: [] for name in steps}
    start = time.perf_counter()
    while min(map(len, times.values())) < min_reps or time.perf_counter() - start < min_time:
        for name, step in steps.items():
            t0 = clock()
            step()
            times[name].append(clock() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def scan_segment_sum(u, delta, A, B, C):
    """y_t = sum_{s<=t} sum_n C_t B_s exp(A (c_t - c_s)) delta_s u_s, c the cumsum of delta."""
    length = u.shape[1]
    cum = delta.cumsum(1)
    lower = torch.ones(length, length, dtype=torch.bool).tril()[:, :, None]
    # Exact and stable: A < 0 and c_t >= c_s below the diagonal; above it, exp(0) is masked.
    segment = torch.where(lower, cum.unsqueeze(2) - cum.unsqueeze(1), 0.0)  # (b, t, s, d)
    decay = torch.exp(segment.unsqueeze(-1) * A) * lower.unsqueeze(-1)  # (b, t, s, d, n)
    pairs = C.unsqueeze(2) * B.unsqueeze(1)  # (b, t, s, n)
    kernel = (decay @ pairs.unsqueeze(-1)).squeeze(-1)  # (b, t, s, d)
    return (kernel * (delta * u).unsqueeze(1)).sum(2)


def scan_hillis_steele(u, delta, A, B, C):
    """h_t by log2(length) doubling steps of the associative scan (a, b) o (a', b')."""
    decay = torch.exp(delta.unsqueeze(-1) * A)  # (b, l, d, n)
    state = (delta * u).unsqueeze(-1) * B.unsqueeze(2)
    length, shift = u.shape[1], 1
    while shift < length:
        head, tail = state[:, :shift], state[:, shift:]
        state = torch.cat([head, torch.addcmul(tail, decay[:, shift:], state[:, :-shift])], 1)
        if 2 * shift < length:
            decay = torch.cat([decay[:, :shift], decay[:, shift:] * decay[:, :-shift]], 1)
        shift *= 2
    return torch.linalg.vecdot(state, C.unsqueeze(2))


def scan_inputs(batch: int, length: int, channels: int, d_state: int):
    def leaf(*shape, scale=1.0):
        return (torch.randn(*shape) * scale).requires_grad_()

    A = (-torch.rand(channels, d_state) * 4 - 0.1).requires_grad_()
    delta = (torch.rand(batch, length, channels) * 0.1).requires_grad_()
    u, B, C = (
        leaf(batch, length, channels),
        leaf(batch, length, d_state),
        leaf(batch, length, d_state),
    )
    return u, delta, A, B, C


def scan_steps(inputs) -> dict[str, Callable[[], None]]:
    variants = {
        "fused": lambda *a: selective_scan(*a),
        "loop": lambda *a: selective_scan(*a, method="loop"),
        "segment-sum": scan_segment_sum,
        "hillis-steele": scan_hillis_steele,
    }
    reference = selective_scan(*inputs, method="loop")
    for name, scan in variants.items():  # same numbers, or the timing means nothing
        torch.testing.assert_close(scan(*inputs), reference, rtol=1e-4, atol=1e-4, msg=name)
    grad = torch.randn_like(reference)
    return {
        name: (lambda scan=scan: scan(*inputs).backward(grad)) for name, scan in variants.items()
    }


def print_table(title: str, keys: list[str], names, rows, ratio=None) -> None:
    print(f"\n{title}")
    header = " ".join(f"{k:>7}" for k in keys) + " " + " ".join(f"{n:>13}" for n in names)
    if ratio:
        header += f" {ratio[2]:>13}"
    print(header + "\n" + "-" * len(header))
    for key_values, ms in rows:
        line = " ".join(f"{v:>7}" for v in key_values) + " "
        line += " ".join(f"{ms[n]:13.2f}" for n in names)
        if ratio:
            line += f" {ms[ratio[0]] / ms[ratio[1]]:13.2f}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=5)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch", type=int, nargs="+", default=[16, 256])
    parser.add_argument("--d-model", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--min-time", type=float, default=3.0, help="seconds per cell")
    parser.add_argument("--min-reps", type=int, default=30)
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu: process CPU time, which a busy or oversubscribed machine disturbs less "
        "(meaningful with --threads 1 only)",
    )
    parser.add_argument("--scans", action="store_true", help="also time selective-scan variants")
    args = parser.parse_args()
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    timing = {"min_time": args.min_time, "min_reps": args.min_reps, "clock": clock}

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); median "
        f"{args.clock}-clock ms per forward+backward"
    )
    rows = []
    for batch in args.batch:
        for d_model in args.d_model:
            tokens = torch.randn(batch, args.tokens, d_model)
            mask = torch.rand(batch, args.tokens) > 0.2
            mask[:, 0] = True
            steps = {}
            for name in ADAPTERS:
                module = make_adapter(name, d_model, args.layers, args.tokens).train()

                def step(module=module, tokens=tokens, mask=mask):
                    module.zero_grad(set_to_none=True)
                    module(tokens, mask).square().mean().backward()

                steps[name] = step
            seconds = interleaved_medians(steps, **timing)
            rows.append(((batch, d_model), {k: 1e3 * v for k, v in seconds.items()}))
    print_table(
        f"Adapters: {args.tokens} tokens, {args.layers} layers",
        ["batch", "d_model"],
        ADAPTERS,
        rows,
        ratio=("mamba", "transformer", "mamba/transf"),
    )

    if args.scans:
        rows = []
        for batch in args.batch:
            for length in (5, 20):
                steps = scan_steps(scan_inputs(batch, length, channels=128, d_state=16))
                seconds = interleaved_medians(steps, **timing)
                rows.append(((batch, length), {k: 1e3 * v for k, v in seconds.items()}))
        print_table("Selective scan: 128 channels, d_state 16", ["batch", "length"], SCANS, rows)


if __name__ == "__main__":
    main()
