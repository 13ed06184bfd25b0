"""Speed and memory of the estimator against its peers, from 170 to 100,000 patients.

Run: ``python benchmarks/bench_scale.py`` (all sizes, about 25 minutes on 2 cores),
``--sizes 170,10000`` for some of them, ``--quick`` for a smoke run of about a minute.

The data are shaped like the paper's (``make_multimodal_survival`` defaults: four
1024-d MRI embeddings through one shared radiology encoder, and a 1536-d pathology
embedding: 5,632 float32 columns, passed as a float32 DataFrame). 170 patients train
with batch 16 for 30 epochs, as in the paper; larger sets with batch 256 for a few
epochs (one at 100,000). Rows, each fitted in turn in one process per size:

- ``M4 <adapter>``: :class:`~sksurvfusion.M4SurvivalEstimator` with each adapter,
  otherwise its defaults.
- ``torch loop <adapter>``: the very network that estimator builds (same class,
  parameters, initialisation, dropout generator, AdamW settings, Cox loss), trained in
  a bare loop over shuffled index batches, every token present (the data miss none):
  the floor of any training framework. ``x loop`` is the estimator's time per epoch
  over this one's: the median, over the repeats, of each estimator fit against the
  loop fit taken right after it, so that a drift of the machine's speed reaches both.
- ``pycox DeepSurv``: pycox's ``CoxPH`` with a one-hidden-layer MLP (batch norm,
  dropout 0.3) of the Mamba network's parameter count; torchtuples' AdamW with the
  same learning rate and decoupled weight decay, batch and epochs.
- ``sksurv CoxPH, PCA``: :func:`~sksurvfusion.make_cox_baseline` (8 whitened
  principal components per modality, then scikit-survival's ``CoxPHSurvivalAnalysis``);
  no epochs: ``s/epoch`` is its whole fit. Skipped above 10,000 patients.

Columns: ``s/epoch``, the median epoch (the estimator's as skorch's history times
them); ``fit s``, the whole ``fit`` (the estimator's with validation, the risks of the
training set and the Breslow estimate; the loop's with building the network);
``peak MiB``, ``/ X`` and ``+ MiB``, see below; ``predict/s``, patients per second of
``predict`` on the whole ``X`` (for the loop, its network's forward pass over ready
tensors), and ``/ cpu-s``, patients per CPU-second of the process: on a shared
machine the clock counts the time other jobs held the cores, the CPU time does not.

Peak memory is the resident set's high-water mark (``VmHWM``) over ``fit`` and
``predict``, each row in a fresh process that generates the data, warms up and then
resets the mark (Linux's ``/proc/self/clear_refs``), so that a row's peak is its own,
not the data generator's: ``peak MiB`` is everything resident at the peak (the
interpreter, libraries and ``X`` included), ``/ X`` that peak over the size of ``X``,
``+ MiB`` the growth over the process before the fit. ``--quick`` takes the peaks in
the timing process instead, the mark reset before each row and freed memory handed
back to the system first.

The workers inherit the environment: torch's threads and OpenMP's defaults, as a
user gets them. (``OMP_WAIT_POLICY=PASSIVE``, which lets an idle OpenMP thread sleep
instead of spinning, helps on a machine busy with other jobs; on an idle one it made
the Mamba adapter's fit and predict 1.8 times slower, waking a thread for each of its
many small operations.)
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time

# the estimator and DeepSurv network of bench_mamba.py, a script in this folder
from bench_mamba import deepsurv_net, estimator

ADAPTERS = ("mamba", "transformer", "mlp")
ROWS = (
    *(row for adapter in ADAPTERS for row in (f"M4 {adapter}", f"torch loop {adapter}")),
    "pycox DeepSurv",
    "sksurv CoxPH, PCA",
)
# the Cox baseline's PCA takes minutes beyond this (and float64 copies of X)
COXPH_MAX_SAMPLES = 10_000
INFERENCE_BATCH = 4096


def _schedule(n_samples: int, quick: bool) -> tuple[int, int]:
    """``(batch_size, epochs)`` of a size."""
    if n_samples <= 500:
        return 16, 5 if quick else 30
    if n_samples <= 5_000:
        return 256, 2 if quick else 10
    if n_samples <= 50_000:
        return 256, 1 if quick else 2
    return 256, 1


def _data(n_samples):
    from sksurvfusion.datasets import make_multimodal_survival

    return make_multimodal_survival(n_samples, random_state=0)


def _cindex(y, risk) -> float:
    import numpy as np

    from sksurvfusion.metrics import _concordance_index

    event, time_ = (y[name] for name in y.dtype.names)
    if not np.isfinite(risk).all():
        return float("nan")
    return _concordance_index(event.astype(bool), time_.astype(float), risk)[0]


def _timed_predict(predict, X) -> tuple[float, float, object]:
    """Patients per second of ``predict(X)``, by the clock and per CPU-second."""
    cpu, start = time.process_time(), time.perf_counter()
    risk = predict(X)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return X.shape[0] / wall, X.shape[0] / max(cpu, 1e-9), risk


def _result(epoch_s, fit_s, predict, X, y) -> dict:
    rate, cpu_rate, risk = _timed_predict(predict, X)
    return {
        "epoch_s": epoch_s,
        "fit_s": fit_s,
        "rate": rate,
        "cpu_rate": cpu_rate,
        "c": _cindex(y, risk),
    }


def _fit_ours(X, y, adapter, batch_size, epochs, seed):
    model = estimator(adapter, batch_size, epochs, seed)
    start = time.perf_counter()
    model.fit(X, y)
    fit_s = time.perf_counter() - start
    epoch_s = [float(d) for d in model.net_.history[:, "dur"]]
    return _result(epoch_s, fit_s, model.predict, X, y)


def _network(X, adapter, seed):
    """The estimator's network for ``X``, built as its ``fit`` builds it."""
    import numpy as np
    import torch

    from sksurvfusion._training import _MODULE_PARAMS
    from sksurvfusion.modality import resolve_modalities
    from sksurvfusion.nn import FusionSurvivalNet
    from sksurvfusion.nn._random import draws_from, set_generator

    model = estimator(adapter, 16, 1, seed)
    values = X.to_numpy()  # float32, C-contiguous: a view
    modalities = resolve_modalities(None, np.asarray(X.columns, dtype=object), X.shape[1])
    groups = model._resolve_encoder_groups(modalities)
    # as the estimator does: every draw (initialisation, dropout, shuffling) from one stream
    generator = torch.Generator().manual_seed(seed)
    with draws_from(generator):
        network = FusionSurvivalNet(
            [columns.tolist() for columns in modalities.values()],
            encoder_groups=groups or None,
            **{name: getattr(model, name) for name in _MODULE_PARAMS},
        )
    set_generator(network, generator)
    # the generated data miss no modality: every token is present
    mask = np.ones((X.shape[0], len(modalities)), dtype=bool)
    return model, network, generator, values, mask


def _fit_torch_loop(X, y, adapter, batch_size, epochs, seed):
    import numpy as np
    import torch

    from sksurvfusion.losses import cox_partial_likelihood

    start = time.perf_counter()
    model, network, generator, values, mask = _network(X, adapter, seed)
    x, mask = torch.from_numpy(values), torch.from_numpy(mask)
    event, time_ = (torch.from_numpy(np.ascontiguousarray(y[name])) for name in y.dtype.names)
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=model.lr, weight_decay=model.weight_decay, fused=True
    )
    epoch_s = []
    network.train()
    for _ in range(epochs):
        epoch_start = time.perf_counter()
        for batch in torch.randperm(x.shape[0], generator=generator).split(batch_size):
            optimizer.zero_grad()
            risk = network(x[batch], mask[batch])
            cox_partial_likelihood(risk, time_[batch], event[batch], ties=model.ties).backward()
            optimizer.step()
        epoch_s.append(time.perf_counter() - epoch_start)
    fit_s = time.perf_counter() - start

    def forward(_):
        network.eval()
        with torch.inference_mode():
            return torch.cat(
                [
                    network(x[i : i + INFERENCE_BATCH], mask[i : i + INFERENCE_BATCH])
                    for i in range(0, x.shape[0], INFERENCE_BATCH)
                ]
            ).numpy()

    return _result(epoch_s, fit_s, forward, X, y)


def _fit_pycox(X, y, batch_size, epochs, seed):
    import numpy as np
    import torch
    import torchtuples as tt
    from pycox.models import CoxPH

    torch.manual_seed(seed)
    network = _network(X, "mamba", seed)[1]
    n_params = sum(p.numel() for p in network.parameters())
    values = X.to_numpy()
    event, time_ = (np.ascontiguousarray(y[name], dtype=np.float32) for name in y.dtype.names)
    start = time.perf_counter()
    mlp = deepsurv_net(X.shape[1], n_params)
    # torchtuples decays by the factor itself each step, torch's AdamW by lr times it
    model = CoxPH(mlp, tt.optim.AdamW(lr=3e-4, decoupled_weight_decay=3e-4 * 0.1))
    model.fit(values, (time_, event), batch_size=batch_size, epochs=epochs, verbose=False)
    fit_s = time.perf_counter() - start
    return _result([fit_s / epochs], fit_s, lambda X: model.predict(X.to_numpy()).ravel(), X, y)


def _fit_coxph(X, y, seed):
    import warnings

    from sksurvfusion import make_cox_baseline

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = make_cox_baseline(random_state=seed).fit(X, y)
    fit_s = time.perf_counter() - start
    return _result([fit_s], fit_s, model.predict, X, y)


def _run(row, X, y, batch_size, epochs, seed):
    if row.startswith("M4 "):
        return _fit_ours(X, y, row.split()[-1], batch_size, epochs, seed)
    if row.startswith("torch loop "):
        return _fit_torch_loop(X, y, row.split()[-1], batch_size, epochs, seed)
    if row == "pycox DeepSurv":
        return _fit_pycox(X, y, batch_size, epochs, seed)
    return _fit_coxph(X, y, seed)


def _rows(n_samples):
    return [row for row in ROWS if row != "sksurv CoxPH, PCA" or n_samples <= COXPH_MAX_SAMPLES]


# --------------------------------------------------------------------------- memory
def _status_mib(field: str) -> float | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Hand freed memory back and restart the high-water mark at the current RSS."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def _peak_mib() -> float:
    peak = _status_mib("VmHWM")
    if peak is None:  # not Linux: the process's peak, data generation included
        import resource

        scale = 1 if sys.platform == "darwin" else 1024
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
    return peak


# --------------------------------------------------------------------------- workers
def _warm_up(batch_size):
    """One-off costs of a process (torch._dynamo's import on the first optimizer, lazy
    imports), paid before anything is timed."""
    X, y = _data(64)
    for row in ROWS:
        _run(row, X, y, batch_size, 1, 0)


def _time_worker(args) -> None:
    X, y = _data(args.n)
    _warm_up(args.batch_size)
    results = {row: [] for row in _rows(args.n)}
    for repeat in range(args.repeats):
        for row in results:
            reset = _reset_peak()
            start = _status_mib("VmRSS")
            result = _run(row, X, y, args.batch_size, args.epochs, repeat)
            result["peak_mib"] = _peak_mib() if reset else None
            result["start_mib"] = start
            results[row].append(result)
    print(json.dumps({"x_mib": X.to_numpy().nbytes / 2**20, "results": results}))


def _memory_worker(args) -> None:
    X, y = _data(args.n)
    _warm_up(args.batch_size)
    reset = _reset_peak()
    start = _status_mib("VmRSS")
    _run(args.row, X, y, args.batch_size, args.epochs, 0)
    print(json.dumps({"peak_mib": _peak_mib() if reset else None, "start_mib": start}))


def _call(*arguments) -> dict:
    command = [sys.executable, __file__, *map(str, arguments)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


# --------------------------------------------------------------------------- table
def _machine() -> str:
    import numpy as np
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    load = f", load {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return (
        f"machine: {platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores"
        f"{load}; python {platform.python_version()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads, OMP_WAIT_POLICY="
        f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}), numpy {np.__version__}"
    )


def _median(values):
    return statistics.median(values) if values else float("nan")


def _print_size(n, batch_size, epochs, repeats, timed, peaks) -> None:
    x_mib, results = timed["x_mib"], timed["results"]
    for row, runs in results.items():
        ratio = f"{'':>6}"
        if row.startswith("M4 "):
            # each fit against the loop's fit taken right after it: the machine's speed
            # drifts, and a busy spell then moves both alike, or one pair of the median
            loops = results["torch loop " + row.split()[-1]]
            pairs = zip(runs, loops, strict=True)
            ratio = (
                f"{_median([_median(o['epoch_s']) / _median(b['epoch_s']) for o, b in pairs]):6.2f}"
            )
        peak, start = peaks[row]
        memory = (
            f"{peak:9.0f} {peak / x_mib:5.2f} {peak - start:7.0f}"
            if peak
            else f"{'n/a':>9} {'':>5} {'':>7}"
        )
        print(
            f"{n:>7} {row:<22} {batch_size:>5} {'-' if 'CoxPH' in row else epochs:>6} "
            f"{_median([_median(r['epoch_s']) for r in runs]):>9.3f} {ratio} "
            f"{_median([r['fit_s'] for r in runs]):>8.2f} {memory} "
            f"{_median([r['rate'] for r in runs]):>10,.0f} "
            f"{_median([r['cpu_rate'] for r in runs]):>10,.0f} "
            f"{_median([r['c'] for r in runs]):>7.3f}",
            flush=True,
        )
    print(
        f"{'':>7} X {x_mib:,.0f} MiB (float32); {repeats} fit(s) per row, rows in turns",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", help="comma-separated (default 170,1000,10000,100000)")
    parser.add_argument("--quick", action="store_true", help="a smoke run of about a minute")
    parser.add_argument("--repeats", type=int, help="fits per row (default 5, 3 above 5,000)")
    parser.add_argument("--worker", choices=["time", "memory"], help=argparse.SUPPRESS)
    parser.add_argument("--row", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "time":
        return _time_worker(args)
    if args.worker == "memory":
        return _memory_worker(args)

    sizes = args.sizes or ("170,1000" if args.quick else "170,1000,10000,100000")
    print(_machine())
    header = (
        f"{'n':>7} {'model':<22} {'batch':>5} {'epochs':>6} {'s/epoch':>9} {'x loop':>6} "
        f"{'fit s':>8} {'peak MiB':>9} {'/ X':>5} {'+ MiB':>7} {'predict/s':>10} "
        f"{'/ cpu-s':>10} {'train C':>7}"
    )
    print(header)
    print("-" * len(header))
    for n in (int(size) for size in sizes.split(",")):
        batch_size, epochs = _schedule(n, args.quick)
        repeats = args.repeats or (1 if args.quick else 5 if n <= 5_000 else 3)
        schedule = ("--n", n, "--batch-size", batch_size, "--epochs", epochs)
        timed = _call("--worker", "time", *schedule, "--repeats", repeats)
        if args.quick:
            peaks = {
                row: (runs[-1]["peak_mib"], runs[-1]["start_mib"])
                for row, runs in timed["results"].items()
            }
        else:
            peaks = {}
            for row in timed["results"]:
                measured = _call("--worker", "memory", "--row", row, *schedule)
                peaks[row] = measured["peak_mib"], measured["start_mib"]
        _print_size(n, batch_size, epochs, repeats, timed, peaks)


if __name__ == "__main__":
    main()
