"""Cost of the Mamba adapter on CPU: estimator fits and adapter steps, taken in turns.

1. Fits of ``M4SurvivalEstimator`` on data shaped like the paper's
   (``make_multimodal_survival`` defaults: four 1024-d MRI embeddings through one shared
   radiology encoder, one 1536-d pathology embedding), estimator defaults otherwise, with
   each adapter (``"mamba"``, ``"mlp"``, ``"transformer"``) at two settings: 170 patients,
   batch 16, 30 epochs; and 10,000 patients, batch 256, one epoch. At the second setting
   pycox's DeepSurv (``pycox.models.CoxPH`` trained by ``CoxPH.fit``, an MLP over the
   concatenated embeddings with as many parameters as the estimator's default network)
   takes its turn too. Targets: Mamba / MLP <= 1.4 at both settings, default estimator /
   DeepSurv <= 2.5 at the second.
2. Adapter steps: forward, loss and backward of each adapter of ``sksurvfusion.nn`` (no
   optimiser) on five tokens at the estimator's ``d_model``, batch 16 and 256. Target:
   Mamba / Transformer <= 1.5.

A fit is the whole ``fit``: validation of the table, training, and the estimator's risks
and baseline hazard on the training rows (pycox's ``CoxPH.fit`` trains only). Variants
take turns (A, B, C, A, B, C, ...) in one process, so that a change of machine load
reaches all of them alike; each cell is a median. The thread count is torch's default,
which the estimator keeps, unless ``--threads`` sets it; the load average printed at the
start and the end says how busy the machine was (with two threads on two cores, a busy
machine slows every parallel operation many times over).

    python benchmarks/bench_mamba.py [--quick] [--threads N] [--repeats R]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch

from sksurvfusion import M4SurvivalEstimator
from sksurvfusion.datasets import make_multimodal_survival
from sksurvfusion.nn import MambaAdapter, MLPAdapter, TransformerAdapter

MRI = ("t1", "t1pc", "t2", "flair")
ADAPTERS = ("mamba", "mlp", "transformer")


def estimator(adapter: str, batch_size: int, max_epochs: int, seed: int):
    return M4SurvivalEstimator(
        encoder_groups={"radiology": list(MRI)},
        adapter=adapter,
        batch_size=batch_size,
        max_epochs=max_epochs,
        device="cpu",
        random_state=seed,
    )


def n_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def deepsurv_net(n_features: int, n_params: int) -> torch.nn.Module:
    """pycox's DeepSurv MLP (torchtuples): one hidden layer, about ``n_params`` parameters."""
    import torchtuples as tt

    # n_features * h + h, batch norm 2 h, then h + 1: n_params for one hidden layer of h
    hidden = max(1, round((n_params - 1) / (n_features + 4)))
    return tt.practical.MLPVanilla(n_features, [hidden], 1, batch_norm=True, dropout=0.3)


def deepsurv_fit(X: np.ndarray, y, n_params: int, batch_size: int, max_epochs: int, seed: int):
    """``pycox.models.CoxPH.fit`` of the DeepSurv MLP (torchtuples' AdamW, lr 3e-4)."""
    import torchtuples as tt
    from pycox.models import CoxPH

    torch.manual_seed(seed)
    model = CoxPH(deepsurv_net(X.shape[1], n_params), tt.optim.AdamW(lr=3e-4))
    event, time_ = (np.ascontiguousarray(y[name]) for name in y.dtype.names)
    target = (time_.astype("float32"), event.astype("float32"))
    with warnings.catch_warnings():  # torchtuples calls a deprecated overload of add
        warnings.simplefilter("ignore", UserWarning)
        model.fit(X, target, batch_size=batch_size, epochs=max_epochs, verbose=False)


def in_turns(runs: dict[str, Callable[[], object]], repeats: int, warm_up: int = 1):
    """Median seconds of each run, the runs taking turns ``repeats`` times."""
    for run in runs.values():
        for _ in range(warm_up):
            run()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def fit_runs(n: int, batch_size: int, epochs: int, with_deepsurv: bool):
    """One fit of each variant at one setting, as argument-free callables."""
    X, y = make_multimodal_survival(n, random_state=0)
    runs = {
        adapter: functools.partial(fit_estimator, adapter, batch_size, epochs, X, y)
        for adapter in ADAPTERS
    }
    if with_deepsurv:
        default = estimator("mamba", batch_size, 1, 0).fit(X[:64], y[:64])
        n_params = n_parameters(default.net_.module_)
        values = X.to_numpy(dtype=np.float32)
        runs["deepsurv"] = functools.partial(
            deepsurv_fit, values, y, n_params, batch_size, epochs, 0
        )
        print(
            f"default network: {n_params} parameters; DeepSurv MLP: "
            f"{n_parameters(deepsurv_net(values.shape[1], n_params))}"
        )
    return runs


def fit_estimator(adapter: str, batch_size: int, epochs: int, X, y) -> None:
    estimator(adapter, batch_size, epochs, 0).fit(X, y)


def fit_rows(settings, repeats: int):
    rows = []
    for n, batch_size, epochs, with_deepsurv in settings:
        seconds = in_turns(fit_runs(n, batch_size, epochs, with_deepsurv), repeats)
        rows.append((f"fit n={n} batch={batch_size} epochs={epochs}", seconds))
    return rows


def adapter_step(module: torch.nn.Module, tokens: torch.Tensor, mask: torch.Tensor) -> None:
    """Forward, loss and backward of one adapter (no optimiser)."""
    module.zero_grad(set_to_none=True)
    module(tokens, mask).square().mean().backward()


def adapter_rows(batches, d_model: int, min_time: float, min_reps: int):
    rows = []
    for batch in batches:
        torch.manual_seed(0)
        tokens = torch.randn(batch, 5, d_model)
        mask = torch.rand(batch, 5) > 0.2
        mask[:, 0] = True
        modules = {
            "mamba": MambaAdapter(d_model, mamba_backend="torch"),
            "mlp": MLPAdapter(d_model, 5),
            "transformer": TransformerAdapter(d_model),
        }
        runs = {
            name: functools.partial(adapter_step, module.train(), tokens, mask)
            for name, module in modules.items()
        }
        in_turns(runs, 5)
        times = {name: [] for name in runs}
        start = time.perf_counter()
        while min(map(len, times.values())) < min_reps or time.perf_counter() - start < min_time:
            for name, run in runs.items():
                t0 = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - t0)
        seconds = {name: statistics.median(ts) for name, ts in times.items()}
        rows.append((f"adapter step batch={batch} d_model={d_model}", seconds))
    return rows


def print_table(rows) -> None:
    names = ["mamba", "mlp", "transformer", "deepsurv"]
    header = f"{'setting':<36}" + "".join(f"{n + ' (ms)':>17}" for n in names)
    header += f"{'mamba/mlp':>11}{'mamba/transf':>14}{'mamba/deepsurv':>16}"
    print(header)
    print("-" * len(header))
    for label, seconds in rows:
        line = f"{label:<36}"
        for name in names:
            line += f"{1e3 * seconds[name]:17.1f}" if name in seconds else f"{'-':>17}"
        for other in ("mlp", "transformer", "deepsurv"):
            width = {"mlp": 11, "transformer": 14, "deepsurv": 16}[other]
            ratio = seconds["mamba"] / seconds[other] if other in seconds else None
            line += f"{ratio:{width}.2f}" if ratio is not None else f"{'-':>{width}}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=5, help="fits per variant and setting")
    parser.add_argument("--skip-fits", action="store_true")
    parser.add_argument("--skip-steps", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        settings = [(170, 16, 2, False), (2_000, 256, 1, True)]
        repeats, min_time, min_reps = 1, 0.2, 5
    else:
        settings = [(170, 16, 30, False), (10_000, 256, 1, True)]
        repeats, min_time, min_reps = args.repeats, 3.0, 50
    print(f"command: python {' '.join(sys.argv)}")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); medians of "
        f"{repeats} fits and of >= {min_reps} adapter steps, variants taken in turns"
    )
    rows = []
    if not args.skip_fits:
        rows += fit_rows(settings, repeats)
    if not args.skip_steps:
        rows += adapter_rows([16, 256], 32, min_time, min_reps)
    print_table(rows)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
