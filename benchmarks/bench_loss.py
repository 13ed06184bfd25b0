"""Time the Cox partial likelihood (forward + backward) beside torchsurv.

Run: ``python benchmarks/bench_loss.py [--repeats 5]``. Prints one row per
sample size and tie method with the median time of each implementation and
their ratio (ours / torchsurv; below 1 means ours is faster). The sizes run
from a training minibatch (16, 256; the pairwise form) to a million samples
(the sorted form); small sizes are repeated 100 times more.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

from sksurvfusion.losses import cox_partial_likelihood

try:
    from torchsurv.loss.cox import neg_partial_log_likelihood
except ImportError:  # pragma: no cover - torchsurv is a test extra
    neg_partial_log_likelihood = None


def _ours(log_risk, time_, event, ties):
    return cox_partial_likelihood(log_risk, time_, event, ties=ties)


def _torchsurv(log_risk, time_, event, ties):
    total = neg_partial_log_likelihood(log_risk, event, time_, ties_method=ties, reduction="sum")
    return total / event.sum()


def _median_backward_seconds(loss_fn, log_risk, time_, event, ties, repeats):
    timings = []
    for _ in range(repeats + 1):
        log_risk.grad = None
        start = time.perf_counter()
        loss_fn(log_risk, time_, event, ties).backward()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings[1:])  # the first call warms up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[16, 256, 10_000, 100_000, 1_000_000]
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="Ties in `time` detected")

    generator = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32")
    header = f"{'n':>9} {'ties':>8} {'ours (ms)':>10} {'torchsurv (ms)':>15} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for n in args.sizes:
        log_risk = torch.randn(n, generator=generator).requires_grad_()
        # times on a grid of 1000 values: heavy ties, as in follow-up recorded in days
        time_ = torch.randint(1, 1001, (n,), generator=generator).float()
        event = torch.rand(n, generator=generator) < 0.3
        for ties in ("breslow", "efron"):
            repeats = args.repeats * (100 if n <= 1024 else 1)
            case = (log_risk, time_, event, ties, repeats)
            ours = _median_backward_seconds(_ours, *case)
            theirs = (
                _median_backward_seconds(_torchsurv, *case)
                if neg_partial_log_likelihood is not None
                else float("nan")
            )
            print(
                f"{n:>9} {ties:>8} {ours * 1e3:>10.2f} {theirs * 1e3:>15.2f} {ours / theirs:>6.2f}"
            )


if __name__ == "__main__":
    main()
