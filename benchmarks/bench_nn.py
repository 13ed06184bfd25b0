"""Forward + backward time of the fusion adapters on CPU.

Times one training step (forward, loss, backward; no optimiser) of each adapter of
``sksurvfusion.nn`` on a batch of modality tokens, and prints a table with the ratio of the
Mamba adapter to the Transformer adapter at the same ``d_model`` (target: <= 1.5).

    python benchmarks/bench_nn.py [--threads N] [--tokens 5] [--min-time 1.0]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sksurvfusion.nn import MambaAdapter, MLPAdapter, TransformerAdapter


def make_adapter(name: str, d_model: int, n_layers: int, n_tokens: int) -> torch.nn.Module:
    if name == "mamba":
        return MambaAdapter(d_model, n_layers=n_layers, mamba_backend="torch")
    if name == "transformer":
        return TransformerAdapter(d_model, n_layers=n_layers)
    return MLPAdapter(d_model, n_tokens)


def time_steps(modules, tokens, mask, *, warmup: int, min_time: float, min_reps: int):
    """Median seconds of one forward + backward of each module.

    The modules take turns, one step each, so that a change of machine load during the
    measurement affects all of them alike and the ratios stay meaningful.
    """

    def step(module):
        module.zero_grad(set_to_none=True)
        module(tokens, mask).square().mean().backward()

    for module in modules.values():
        for _ in range(warmup):
            step(module)
    times = {name: [] for name in modules}
    start = time.perf_counter()
    while len(times[next(iter(modules))]) < min_reps or time.perf_counter() - start < min_time:
        for name, module in modules.items():
            t0 = time.perf_counter()
            step(module)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=5)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch", type=int, nargs="+", default=[16, 256])
    parser.add_argument("--d-model", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--min-time", type=float, default=3.0, help="seconds per cell")
    parser.add_argument("--min-reps", type=int, default=30)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    adapters = ("mamba", "transformer", "mlp")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{args.tokens} tokens, {args.layers} layers; median ms per forward+backward"
    )
    header = f"{'batch':>6} {'d_model':>7} " + " ".join(f"{a:>12}" for a in adapters)
    print(header + f" {'mamba/transf':>13}")
    print("-" * (len(header) + 14))
    for batch in args.batch:
        for d_model in args.d_model:
            tokens = torch.randn(batch, args.tokens, d_model)
            mask = torch.rand(batch, args.tokens) > 0.2
            mask[:, 0] = True
            modules = {
                name: make_adapter(name, d_model, args.layers, args.tokens).train()
                for name in adapters
            }
            seconds = time_steps(
                modules, tokens, mask, warmup=5, min_time=args.min_time, min_reps=args.min_reps
            )
            ms = {name: 1e3 * s for name, s in seconds.items()}
            ratio = ms["mamba"] / ms["transformer"]
            cells = " ".join(f"{ms[a]:12.2f}" for a in adapters)
            print(f"{batch:>6} {d_model:>7} {cells} {ratio:13.2f}")


if __name__ == "__main__":
    main()
