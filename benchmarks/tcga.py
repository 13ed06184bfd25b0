"""C-index on four TCGA cohorts with their official 5-fold splits.

Run: ``python benchmarks/tcga.py --data ../shared/data/tcga``. The data are
not part of the repository; without them the script says so and exits 0.

Each cohort is read at the patient level (one row per ``case_id``), with
event = 1 - ``censorship`` and time = ``survival_months``. Modalities:
``rna`` (RNA-seq z-scores, clipped to [-5, 5] because of extreme outliers),
``cnv``, ``mut`` and ``clinical`` (age, sex, one-hot histology; the tissue
source site is a batch variable and is left out). The same per-modality
preprocessing, fitted on each training fold (standardise; RNA reduced by PCA),
feeds a ridge Cox model and the fusion estimator.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.util import Surv

from sksurvfusion import M4SurvivalEstimator

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
            block.columns = [f"{modality}__{c[: -len(suffix)]}" for c in columns]
            blocks.append(block)
    clinical = pd.concat(
        [
            frame[["age", "is_female"]].astype(float),
            pd.get_dummies(frame["oncotree_code"], prefix="", prefix_sep="", dtype=float),
        ],
        axis=1,
    )
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


def make_preprocessor(X: pd.DataFrame, n_rna_components: int):
    steps = []
    for modality in dict.fromkeys(c.split("__")[0] for c in X.columns):
        selector = make_column_selector(pattern=f"^{modality}__")
        if modality == "rna":
            pipe = make_pipeline(
                FunctionTransformer(
                    np.clip, kw_args={"a_min": -5.0, "a_max": 5.0}, feature_names_out="one-to-one"
                ),
                StandardScaler(),
                PCA(n_rna_components, random_state=0),
            )
        else:
            pipe = StandardScaler()
        steps.append((modality, pipe, selector))
    # names stay "<modality>__..." so the estimator sees the same modalities
    return ColumnTransformer(steps, verbose_feature_names_out=True).set_output(transform="pandas")


def models(X, args):
    preprocess = lambda: make_preprocessor(X, args.rna_components)  # noqa: E731
    return {
        "ridge Cox": lambda: make_pipeline(preprocess(), CoxPHSurvivalAnalysis(alpha=args.alpha)),
        "M4SurvivalEstimator": lambda: make_pipeline(
            preprocess(), M4SurvivalEstimator(random_state=0, device="cpu")
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/tcga"))
    parser.add_argument("--cohorts", nargs="+", default=list(COHORTS), choices=COHORTS)
    parser.add_argument("--rna-components", type=int, default=32)
    parser.add_argument("--alpha", type=float, default=10.0)
    args = parser.parse_args()
    if not (args.data / "splits").is_dir():
        print(f"TCGA data not found at {args.data}; nothing to do.")
        return 0

    results = []
    for cohort in args.cohorts:
        X, y = load_cohort(args.data, cohort)
        folds = load_folds(args.data, cohort, X.index)
        for name, build in models(X, args).items():
            scores, seconds = [], []
            for train, test in folds:
                start = time.perf_counter()
                model = build().fit(X.iloc[train], y[train])
                seconds.append(time.perf_counter() - start)
                scores.append(model.score(X.iloc[test], y[test]))
            results.append((cohort, name, scores, statistics.median(seconds)))
            print(
                f"{cohort:<7} {name:<22} C = {np.mean(scores):.3f} ± {np.std(scores):.3f}"
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
