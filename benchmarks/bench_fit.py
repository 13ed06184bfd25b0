"""Training time and peak memory of the estimator on data shaped like the paper's.

Run: ``python benchmarks/bench_fit.py``. Each measurement runs in a fresh
process so that its peak resident memory is its own. Rows:

- ``M4SurvivalEstimator``: 170 patients, four 1024-d MRI embeddings (one shared
  radiology encoder) and one 1536-d pathology embedding, batch 16, 30 epochs,
  lr 3e-4, the default Mamba adapter (two layers); median of 3 fits.
- ``with the MLP adapter``: the same estimator with ``adapter="mlp"``.
- ``with one Mamba layer``: the same estimator with ``n_layers=1``.
- ``minimal network, torch loop``: a floor for any network of the method's
  shape: the estimator's encoders (one shared by the MRI contrasts, 1024 or
  1536 -> 64 -> 32 with GELU and dropout 0.3), the mean of the five tokens and a
  linear head, trained in a plain torch loop (AdamW, the Cox loss) with nothing
  else: no adapter, normalisation, masks or training framework.
- ``published demo network``: the same data through the network of the
  method's published demo (MRI 4096 -> 1024 -> 1024 -> 512, pathology 1536 ->
  512 -> 512, head 1024 -> 512 -> 1; AdamW; a plain torch loop), same batch,
  epochs and learning rate.
- scaling rows: one epoch at n = 10,000 and 100,000 with ``batch_size=256``.

The last line times the estimator and the demo network again, their fits taken
in turns in one process, and gives the ratio of the two: the machine's speed
drifts by a factor of up to 1.5 within a run, so rows timed a minute apart
compare only roughly.

Each process first runs an untimed warm-up: the first torch optimizer built in a
process imports ``torch._dynamo`` (about 2 s on a 2-core machine), a one-off
cost of any torch training, not of one model or the other.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

MRI = ("t1", "t1pc", "t2", "flair")


def _data(n_samples):
    from sksurvfusion.datasets import make_multimodal_survival

    return make_multimodal_survival(n_samples, random_state=0)


def _ours(n_samples, batch_size, max_epochs, repeats, **params):
    from sksurvfusion import M4SurvivalEstimator

    X, y = _data(n_samples)
    warm_up = M4SurvivalEstimator(encoder_groups={"radiology": list(MRI)}, max_epochs=1)
    warm_up.set_params(device="cpu", random_state=0).fit(X[:32], y[:32])
    timings = []
    for seed in range(repeats):
        model = M4SurvivalEstimator(
            encoder_groups={"radiology": list(MRI)},
            batch_size=batch_size,
            max_epochs=max_epochs,
            lr=3e-4,
            device="cpu",
            **params,
            random_state=seed,
        )
        start = time.perf_counter()
        model.fit(X, y)
        timings.append(time.perf_counter() - start)
    return timings, model.score(X, y)


def _ours_mlp(n_samples, batch_size, max_epochs, repeats):
    return _ours(n_samples, batch_size, max_epochs, repeats, adapter="mlp")


def _ours_one_layer(n_samples, batch_size, max_epochs, repeats):
    return _ours(n_samples, batch_size, max_epochs, repeats, n_layers=1)


def _plain_torch_fit(build_network, n_samples, batch_size, max_epochs, repeats):
    """Fit ``build_network()`` on (MRI, pathology) tensors in a plain torch loop."""
    import numpy as np
    import torch
    from sksurv.metrics import concordance_index_censored

    from sksurvfusion.losses import cox_partial_likelihood

    X, y = _data(n_samples)
    event_field, time_field = y.dtype.names
    mri = torch.from_numpy(X.filter(regex="^(t1|t1pc|t2|flair)__").to_numpy())
    pathology = torch.from_numpy(X.filter(regex="^pathology__").to_numpy())
    event = torch.from_numpy(np.ascontiguousarray(y[event_field]))
    time_ = torch.from_numpy(np.ascontiguousarray(y[time_field]))

    torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])  # warm-up: imports torch._dynamo
    timings = []
    for seed in range(repeats):
        torch.manual_seed(seed)
        start = time.perf_counter()
        network = build_network()
        optimizer = torch.optim.AdamW(network.parameters(), lr=3e-4)
        for _ in range(max_epochs):
            for batch in torch.randperm(n_samples).split(batch_size):
                optimizer.zero_grad()
                risk = network(mri[batch], pathology[batch]).reshape(-1)
                cox_partial_likelihood(risk, time_[batch], event[batch]).backward()
                optimizer.step()
        timings.append(time.perf_counter() - start)
    network.eval()
    with torch.no_grad():
        risk = network(mri, pathology).numpy().ravel()
    if not np.isfinite(risk).all():
        return timings, float("nan")
    return timings, concordance_index_censored(y[event_field], y[time_field], risk)[0]


def _published_demo(n_samples, batch_size, max_epochs, repeats):
    import torch
    from torch import nn

    class DemoNetwork(nn.Module):
        def __init__(self):
            super().__init__()
            self.mri = nn.Sequential(
                nn.Linear(4096, 1024),
                nn.ReLU(),
                nn.Linear(1024, 1024),
                nn.ReLU(),
                nn.Linear(1024, 512),
                nn.ReLU(),
            )
            self.pathology = nn.Sequential(
                nn.Linear(1536, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU()
            )
            self.head = nn.Sequential(nn.Linear(1024, 512), nn.ReLU(), nn.Linear(512, 1))

        def forward(self, mri, pathology):
            return self.head(torch.cat([self.mri(mri), self.pathology(pathology)], 1))

    return _plain_torch_fit(DemoNetwork, n_samples, batch_size, max_epochs, repeats)


def _minimal(n_samples, batch_size, max_epochs, repeats):
    import torch
    from torch import nn

    def encoder(in_features):
        return nn.Sequential(
            nn.Linear(in_features, 64), nn.GELU(), nn.Dropout(0.3), nn.Linear(64, 32)
        )

    class MinimalNetwork(nn.Module):
        """The estimator's default sizes minus everything but the encoders: one token
        per modality (one encoder shared by the MRI contrasts), mean, linear head."""

        def __init__(self):
            super().__init__()
            self.mri, self.pathology, self.head = encoder(1024), encoder(1536), nn.Linear(32, 1)

        def forward(self, mri, pathology):
            tokens = torch.cat(
                [self.mri(mri.unflatten(1, (4, 1024))), self.pathology(pathology).unsqueeze(1)],
                dim=1,
            )
            return self.head(tokens.mean(1))

    return _plain_torch_fit(MinimalNetwork, n_samples, batch_size, max_epochs, repeats)


def _alternating(n_samples, batch_size, max_epochs, repeats):
    """Fits of the estimator and of the demo network taken in turns, in one process, so
    that a drift of the machine's speed reaches both alike."""
    ours, demo = [], []
    for _ in range(repeats):
        ours += _ours(n_samples, batch_size, max_epochs, 1)[0]
        demo += _published_demo(n_samples, batch_size, max_epochs, 1)[0]
    return {"ours": ours, "demo": demo}


def _worker(args) -> None:
    if args.worker == "alternating":
        timings = _alternating(args.n, args.batch_size, args.epochs, args.repeats)
        print(json.dumps(timings))
        return

    run = {
        "ours": _ours,
        "ours-mlp": _ours_mlp,
        "ours-1": _ours_one_layer,
        "demo": _published_demo,
        "minimal": _minimal,
    }[args.worker]
    timings, c_index = run(args.n, args.batch_size, args.epochs, args.repeats)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"timings": timings, "c_index": c_index, "peak_mib": peak_mib}))


def _measure(worker, n, batch_size, epochs, repeats):
    command = [
        sys.executable,
        __file__,
        "--worker",
        worker,
        "--n",
        str(n),
        "--batch-size",
        str(batch_size),
        "--epochs",
        str(epochs),
        "--repeats",
        str(repeats),
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--worker", choices=["ours", "ours-mlp", "ours-1", "demo", "minimal", "alternating"]
    )
    parser.add_argument("--n", type=int, default=170)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-scaling", action="store_true")
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return

    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    header = (
        f"{'model':<28} {'n':>7} {'batch':>5} {'epochs':>6} {'median fit (s)':>15} "
        f"{'s / epoch':>10} {'train C':>8} {'peak RSS (MiB)':>15}"
    )
    print(header)
    print("-" * len(header))
    rows = [
        ("M4SurvivalEstimator", "ours", 170, 16, 30, 3),
        ("  with the MLP adapter", "ours-mlp", 170, 16, 30, 3),
        ("  with one Mamba layer", "ours-1", 170, 16, 30, 3),
        ("minimal network, torch loop", "minimal", 170, 16, 30, 3),
        ("published demo network", "demo", 170, 16, 30, 3),
    ]
    if not args.skip_scaling:
        rows += [
            ("M4SurvivalEstimator", "ours", 10_000, 256, 1, 1),
            ("M4SurvivalEstimator", "ours", 100_000, 256, 1, 1),
        ]
    for label, worker, n, batch_size, epochs, repeats in rows:
        result = _measure(worker, n, batch_size, epochs, repeats)
        median = statistics.median(result["timings"])
        print(
            f"{label:<28} {n:>7} {batch_size:>5} {epochs:>6} {median:>15.2f} "
            f"{median / epochs:>10.3f} {result['c_index']:>8.3f} {result['peak_mib']:>15.0f}"
        )
    # the machine's speed drifts within a run: the ratio comes from fits taken in turns
    turns = _measure("alternating", 170, 16, 30, 3)
    ours, demo = statistics.median(turns["ours"]), statistics.median(turns["demo"])
    print(
        f"\nfits taken in turns: M4SurvivalEstimator {ours:.2f} s, published demo network "
        f"{demo:.2f} s (medians of 3); ratio {ours / demo:.3f}"
    )


if __name__ == "__main__":
    main()
