"""C-index on four TCGA cohorts with their official 5-fold splits.

Run: ``python benchmarks/tcga.py --data ../shared/data/tcga``. The data are
not part of the repository; without them the script says so and exits 0.

Each cohort is read at the patient level (one row per ``case_id``), with
event = 1 - ``censorship`` and time = ``survival_months``. Modalities:
``rna`` (RNA-seq z-scores, clipped to [-5, 5] because of extreme outliers),
``cnv``, ``mut`` and ``clinical`` (age, sex, one-hot histology; the tissue
source site is a batch variable and is left out; the few missing ages get the
cohort median). The same per-modality preprocessing
(:class:`~sksurvfusion.baselines.ModalityPreprocessor`: standardise, whitened
PCA for wide modalities, its randomized solver seeded), fitted on each training
fold, feeds the ridge Cox baseline and the fusion estimator. The network is
fitted with ``--seeds`` seeds (3 by default) and its C-index averaged per fold;
``--set NAME=VALUE ...`` changes its parameters (``--set linear_term=false``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.pipeline import make_pipeline
from sksurv.util import Surv
from threadpoolctl import threadpool_limits

from sksurvfusion import M4SurvivalEstimator, make_cox_baseline
from sksurvfusion.baselines import ModalityPreprocessor

COHORTS = ("gbmlgg", "blca", "luad", "ucec")
SUFFIXES = {"_rnaseq": "rna", "_cnv": "cnv", "_mut": "mut"}


def load_cohort(root: Path, cohort: str):
    frame = pd.read_csv(
        root / f"tcga_{cohort}_all_clean.csv.zip", compression="zip", low_memory=False
    )
    frame = frame.drop_duplicates("case_id").set_index("case_id")
    y = Surv.from_arrays(1 - frame["censorship"].to_numpy(), frame["survival_months"].to_numpy())
    blocks = []
    for suffix, modality in SUFFIXES.items():
        columns = [c for c in frame.columns if c.endswith(suffix)]
        if columns:
            block = frame[columns].astype(float)
            if modality == "rna":
                block = block.clip(-5.0, 5.0)
            block.columns = [f"{modality}__{c[: -len(suffix)]}" for c in columns]
            blocks.append(block)
    clinical = pd.concat(
        [
            frame[["age", "is_female"]].astype(float),
            pd.get_dummies(frame["oncotree_code"], prefix="", prefix_sep="", dtype=float),
        ],
        axis=1,
    )
    clinical["age"] = clinical["age"].fillna(clinical["age"].median())
    clinical.columns = [f"clinical__{c}" for c in clinical.columns]
    X = pd.concat([clinical, *blocks], axis=1)
    return X, y


def load_folds(root: Path, cohort: str, index: pd.Index):
    folds = []
    for k in range(5):
        split = pd.read_csv(root / "splits" / f"tcga_{cohort}" / f"splits_{k}.csv")
        train = index.get_indexer(split["train"].dropna())
        test = index.get_indexer(split["val"].dropna())
        folds.append((train[train >= 0], test[test >= 0]))
    return folds


def models(args):
    """Model builders by name, each with the seeds it is fitted with."""

    def fusion(seed):
        # pandas output keeps the "<modality>__" column names: without them the network
        # would read all columns as one modality, one token
        return make_pipeline(
            ModalityPreprocessor(n_components=args.n_components, random_state=0).set_output(
                transform="pandas"
            ),
            M4SurvivalEstimator(random_state=seed, device="cpu").set_params(**args.set),
        )

    return {
        "ridge Cox": (
            lambda seed: make_cox_baseline(n_components=args.n_components, random_state=0),
            [0],
        ),
        # a network's score moves with its seed: average several
        "M4SurvivalEstimator": (fusion, list(range(args.seeds))),
    }


def _parse_setting(item: str) -> tuple[str, object]:
    name, sep, value = item.partition("=")
    if not sep:
        raise SystemExit(f"--set takes NAME=VALUE, got {item!r}")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value  # a bare string, e.g. adapter=mlp


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/tcga"))
    parser.add_argument("--cohorts", nargs="+", default=list(COHORTS), choices=COHORTS)
    parser.add_argument("--n-components", type=int, default=8)
    parser.add_argument("--models", nargs="+", default=["ridge Cox", "M4SurvivalEstimator"])
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="NAME=JSON",
        help="estimator parameters other than the defaults, as JSON values: "
        "linear_term=false risk_bound=null d_state=8 (a bare word is a string)",
    )
    parser.add_argument(
        "--seeds", type=int, default=3, help="seeds of the network, averaged per fold"
    )
    args = parser.parse_args()
    args.set = dict(_parse_setting(item) for item in args.set)
    # fail now on an unknown name or a bad value, not after the data have loaded
    M4SurvivalEstimator().set_params(**args.set)._validate_params()
    if not (args.data / "splits").is_dir():
        print(f"TCGA data not found at {args.data}; nothing to do.")
        return 0

    # small matrices: threads only contend (and spin when several runs share the cores)
    threadpool_limits(limits=1, user_api="blas")
    torch.set_num_threads(1)
    if args.set:
        print(f"M4SurvivalEstimator with {args.set}")
    results = []
    for cohort in args.cohorts:
        X, y = load_cohort(args.data, cohort)
        folds = load_folds(args.data, cohort, X.index)
        for name, (build, seeds) in models(args).items():
            if name not in args.models:
                continue
            # by_seed[s][k]: C on test fold k of the model fitted with seed s
            by_seed, seconds = [], []
            for seed in seeds:
                by_seed.append([])
                for train, test in folds:
                    start = time.perf_counter()
                    model = build(seed).fit(X.iloc[train], y[train])
                    seconds.append(time.perf_counter() - start)
                    by_seed[-1].append(model.score(X.iloc[test], y[test]))
            scores = np.mean(by_seed, axis=0)
            results.append((cohort, name, scores, statistics.median(seconds)))
            spread = np.ptp(np.mean(by_seed, axis=1))
            print(
                f"{cohort:<7} {name:<22} C = {np.mean(scores):.3f} ± {np.std(scores):.3f} over "
                f"folds, range {spread:.3f} over {len(seeds)} seed(s)"
                f"   fit {statistics.median(seconds):.1f} s",
                flush=True,
            )

    print()
    table = pd.DataFrame(
        [(c, n, np.mean(s), np.std(s), t) for c, n, s, t in results],
        columns=["cohort", "model", "mean C", "sd C", "fit s"],
    )
    print(
        table.pivot(index="model", columns="cohort", values="mean C")
        .assign(mean=lambda t: t.mean(axis=1))
        .round(3)
        .to_string()
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
