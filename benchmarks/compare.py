"""The fusion network against scikit-survival and pycox: accuracy, cost, missing modalities.

Run: ``python benchmarks/compare.py`` (about 40 minutes on a shared 2-core machine;
``--quick`` is a smoke run of under a minute). It prints, for every data set and
model on the same folds:

1. **Accuracy**: Harrell's C and the integrated Brier score (mean ± sd over the
   test folds) and the mean seconds per fit.
2. **Missing modalities**: Harrell's C when 30 % or 60 % of the *test* patients
   lose one modality (each in turn), and when 30 % of the *training* patients lack
   one modality (``TRAIN_MISSING``), the test patients complete.

Data sets (``--datasets``)
    ``breast``: GSE7390 (:func:`~sksurvfusion.datasets.load_breast_cancer`), event-
    stratified 5-fold CV repeated ``--repeats`` times. ``gbmlgg``, ``blca``,
    ``luad``, ``ucec``: the TCGA cohorts of ``--tcga``, read by ``benchmarks/tcga.py``
    with their official 5 folds (skipped with a message when absent).
    ``synthetic``: :func:`~sksurvfusion.datasets.make_multimodal_survival`, 300
    patients, two 32-column modalities whose hazard holds a cross-modal product
    (the gallery's setting), event-stratified 5-fold CV.

Preprocessing
    :class:`~sksurvfusion.baselines.ModalityPreprocessor` (standardise, 8 whitened
    principal components per wide modality, PCA seeded), fitted on each training
    fold and shared by all models. The networks get ``missing="nan"`` (a missing
    modality stays NaN and its token is masked); every other model gets
    ``missing="impute"`` (training mean plus one indicator column per modality
    missing in training), as :func:`~sksurvfusion.make_cox_baseline` does. On
    complete data the two give the same columns.

Models
    ``mamba``, ``transformer``, ``mlp``: :class:`~sksurvfusion.M4SurvivalEstimator`
    with that adapter, defaults otherwise (30 epochs, batch 16, lr 3e-4).
    ``ridge Cox``: the ``"cox"`` step of :func:`~sksurvfusion.make_cox_baseline`
    (``CoxPHSurvivalAnalysis(alpha=100)``). ``Coxnet``: ``CoxnetSurvivalAnalysis``
    with ``l1_ratio=0.5``; its alpha is chosen on each training fold by a 3-fold
    inner CV (Harrell's C) over a path of 30 alphas down to 1 % of the largest,
    then refitted at that alpha with a baseline model (inner CV inside its fit
    time). ``RSF``: ``RandomSurvivalForest(n_estimators=100, min_samples_leaf=15,
    max_features="sqrt")``, seed 0. ``DeepSurv``: ``pycox.models.CoxPH`` with
    torchtuples' ``MLPVanilla`` (two hidden layers of equal width, batch norm,
    dropout 0.1, as in pycox's examples) whose width is chosen so that its
    parameter count is closest to that of the default (mamba) network on the same
    columns; Adam, 30 epochs, batch 16, lr 3e-4; baseline hazards by Breslow.
    The networks and DeepSurv are fitted with seeds ``0 .. --seeds - 1`` and their
    scores averaged over seeds within each fold before the mean and sd over folds.

Measurement
    C: scikit-survival's ``concordance_index_censored`` on the predicted risks.
    IBS: ``integrated_brier_score`` on 20 times evenly spaced between the 10th and
    80th percentiles of each test fold's follow-up, censoring weights from the
    training fold; "n/a" for a model without survival functions. Fit seconds: wall
    and, in brackets, CPU time (steadier when other jobs share the machine) of the
    model's ``fit`` on the preprocessed fold (preprocessing, shared, excluded),
    after an untimed warm-up, with one torch thread and one BLAS thread
    (``torch.set_num_threads(1)``): these networks are too small to gain from a
    second thread, and on a shared machine two threads wait on each other.
    Missing modalities: the rows that lose a modality are drawn with a seed of the
    fold, modality and rate only, so every model sees the same rows.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pycox
import sklearn
import sksurv
import torch
import torchtuples as tt
from pycox.models import CoxPH
from pycox.models.loss import cox_ph_loss
from sklearn.exceptions import ConvergenceWarning
from sksurv.ensemble import RandomSurvivalForest
from sksurv.linear_model import CoxnetSurvivalAnalysis, CoxPHSurvivalAnalysis
from sksurv.metrics import concordance_index_censored, integrated_brier_score

# run as a script, this folder is on sys.path: the TCGA reader is benchmarks/tcga.py's
from tcga import COHORTS, load_cohort, load_folds
from threadpoolctl import threadpool_limits

import sksurvfusion
from sksurvfusion import M4SurvivalEstimator
from sksurvfusion.baselines import ModalityPreprocessor
from sksurvfusion.datasets import load_breast_cancer, make_multimodal_survival
from sksurvfusion.model_selection import RepeatedSurvivalStratifiedKFold, SurvivalStratifiedKFold

REPO = Path(__file__).resolve().parents[1]
DATASETS = ("breast", *COHORTS, "synthetic")
NETWORKS = ("mamba", "transformer", "mlp")
MODELS = (*NETWORKS, "ridge Cox", "Coxnet", "RSF", "DeepSurv")
SEEDED = (*NETWORKS, "DeepSurv")
ROBUST_DATASETS = ("synthetic", "gbmlgg", "breast")
# the modality that 30 % of the training patients lack: the costly assay
TRAIN_MISSING = {"synthetic": "pathology", "breast": "genes", **dict.fromkeys(COHORTS, "rna")}
TEST_MISSING_RATES = (0.3, 0.6)
TRAIN_MISSING_RATE = 0.3
N_COMPONENTS = 8


# ---------------------------------------------------------------------------- data
@dataclass
class Dataset:
    name: str
    X: pd.DataFrame
    y: np.ndarray
    folds: list[tuple[np.ndarray, np.ndarray]]
    description: str


def load_datasets(args) -> list[Dataset]:
    datasets = []
    for name in args.datasets:
        if name == "breast":
            X, y = load_breast_cancer()
            cv = RepeatedSurvivalStratifiedKFold(
                n_splits=args.n_folds, n_repeats=args.repeats, random_state=0
            )
            folds = list(cv.split(X, y))
            how = f"{args.repeats} x {args.n_folds}-fold"
        elif name == "synthetic":
            X, y = make_multimodal_survival(
                args.n_synthetic,
                modalities={"mri": 32, "pathology": 32},
                n_latent=4,
                noise=0.5,
                dtype=np.float64,
                random_state=0,
            )
            cv = SurvivalStratifiedKFold(args.n_folds, shuffle=True, random_state=0)
            folds = list(cv.split(X, y))
            how = f"{args.n_folds}-fold"
        else:
            if not (args.tcga / "splits").is_dir():
                print(f"# {name}: TCGA data not found at {args.tcga}; skipped", flush=True)
                continue
            X, y = load_cohort(args.tcga, name)
            folds = load_folds(args.tcga, name, X.index)[: args.n_folds]
            how = f"official {len(folds)} folds"
        event = _event(y)
        modalities = list(dict.fromkeys(c.split("__")[0] for c in X.columns))
        description = (
            f"{name}: {len(y)} patients, {int(event.sum())} events, {X.shape[1]} columns "
            f"in {len(modalities)} modalities ({', '.join(modalities)}); {how}"
        )
        datasets.append(Dataset(name, X, y, folds, description))
    return datasets


def _event(y) -> np.ndarray:
    return np.asarray(y[y.dtype.names[0]], dtype=bool)


def _time(y) -> np.ndarray:
    return np.asarray(y[y.dtype.names[1]], dtype=np.float64)


def modality_columns(X: pd.DataFrame) -> dict[str, list[str]]:
    columns = defaultdict(list)
    for c in X.columns:
        columns[c.split("__")[0]].append(c)
    return dict(columns)


def drop_modality(X: pd.DataFrame, columns, rate: float, seed) -> pd.DataFrame:
    """``X`` with ``columns`` set to NaN in a random ``rate`` of its rows."""
    rows = np.random.default_rng(seed).permutation(len(X))[: round(rate * len(X))]
    X = X.copy()
    X.iloc[rows, X.columns.get_indexer(columns)] = np.nan
    return X


# -------------------------------------------------------------------------- models
class Network:
    """M4SurvivalEstimator with one adapter, defaults otherwise."""

    def __init__(self, adapter, seed, epochs):
        self.estimator = M4SurvivalEstimator(
            adapter=adapter, max_epochs=epochs, device="cpu", random_state=seed
        )

    def fit(self, X, y):
        self.estimator.fit(X, y)
        return self

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.estimator.net_.module_.parameters())

    def risk(self, X):
        return self.estimator.predict(X)

    def survival(self, X, times):
        return _evaluate(self.estimator.predict_survival_function(X), times)


class SksurvModel:
    """A scikit-survival estimator on the imputed columns."""

    def __init__(self, estimator):
        self.estimator = estimator

    def fit(self, X, y):
        self.estimator.fit(X, y)
        return self

    def risk(self, X):
        return self.estimator.predict(X)

    def survival(self, X, times):
        return _evaluate(self.estimator.predict_survival_function(X), times)


class TunedCoxnet(SksurvModel):
    """Elastic-net Cox, alpha chosen by an inner 3-fold CV over a path of 30 alphas."""

    def __init__(self):
        super().__init__(None)

    def fit(self, X, y):
        path = {"l1_ratio": 0.5, "n_alphas": 30, "alpha_min_ratio": 0.01}
        with warnings.catch_warnings():
            # the weakest penalties of the path may stop at max_iter; they are rarely chosen
            warnings.simplefilter("ignore", ConvergenceWarning)
            alphas = CoxnetSurvivalAnalysis(**path).fit(X, y).alphas_
            inner = SurvivalStratifiedKFold(3, shuffle=True, random_state=0)
            scores = np.zeros(len(alphas))
            for train, test in inner.split(X, y):
                model = CoxnetSurvivalAnalysis(alphas=alphas, l1_ratio=0.5)
                model.fit(X[train], y[train])
                for k, alpha in enumerate(model.alphas_):
                    scores[k] += _cindex(y[test], model.predict(X[test], alpha=alpha))
            self.alpha_ = float(alphas[np.argmax(scores)])
            self.estimator = CoxnetSurvivalAnalysis(
                alphas=[self.alpha_], l1_ratio=0.5, fit_baseline_model=True
            ).fit(X, y)
        return self


class EventlessBatchSafeLoss(torch.nn.Module):
    """pycox's Cox loss, but 0 (with a gradient) on a batch without events.

    pycox divides by the batch's number of events: a batch of censored patients
    only gives NaN, and one NaN step turns every weight NaN. On GBMLGG (a third of
    the patients have an event) a batch of 16 lacks events with probability 0.2 %,
    once or twice in a 30-epoch fit.
    """

    def forward(self, log_h, durations, events):
        if not events.any():
            return log_h.sum() * 0.0
        return cox_ph_loss(log_h, durations, events)


class DeepSurv:
    """pycox's CoxPH on torchtuples' MLPVanilla of ``hidden`` units per layer."""

    def __init__(self, hidden, seed, epochs, batch_size=16, lr=3e-4):
        self.hidden, self.seed, self.epochs = hidden, seed, epochs
        self.batch_size, self.lr = batch_size, lr

    @staticmethod
    def mlp(n_features, hidden):
        return tt.practical.MLPVanilla(
            n_features, [hidden, hidden], 1, batch_norm=True, dropout=0.1, output_bias=False
        )

    @classmethod
    def matching_width(cls, n_features, n_parameters) -> int:
        """Hidden width whose parameter count is closest to ``n_parameters``."""
        # two blocks (linear, ReLU, batch norm) and a bias-free output: h^2 + (p + 7) h
        b = n_features + 7
        guess = round((-b + math.sqrt(b * b + 4 * n_parameters)) / 2)
        candidates = range(max(1, guess - 2), guess + 3)
        return min(candidates, key=lambda h: abs(cls.count(n_features, h) - n_parameters))

    @classmethod
    def count(cls, n_features, hidden) -> int:
        return sum(p.numel() for p in cls.mlp(n_features, hidden).parameters())

    def fit(self, X, y):
        # torchtuples draws its initial weights and shuffles from torch's global generator
        torch.manual_seed(self.seed)
        X = np.ascontiguousarray(X, dtype=np.float32)
        if len(X) % self.batch_size == 1:
            raise ValueError("a last batch of one patient breaks batch norm: change the folds")
        self.model = CoxPH(
            self.mlp(X.shape[1], self.hidden),
            tt.optim.Adam(lr=self.lr),
            loss=EventlessBatchSafeLoss(),
        )
        target = (_time(y).astype(np.float32), _event(y).astype(np.float32))
        self.model.fit(X, target, batch_size=self.batch_size, epochs=self.epochs, verbose=False)
        self.model.compute_baseline_hazards()
        return self

    def risk(self, X):
        return self.model.predict(np.ascontiguousarray(X, dtype=np.float32)).ravel()

    def survival(self, X, times):
        curves = self.model.predict_surv_df(np.ascontiguousarray(X, dtype=np.float32))
        at = np.searchsorted(curves.index.to_numpy(), times, side="right") - 1
        values = curves.to_numpy()[np.maximum(at, 0)].T
        return np.where(at[None, :] < 0, 1.0, values)


def _evaluate(functions, times) -> np.ndarray:
    # a survival curve is flat after its last time: clip into its domain
    return np.vstack([f(np.clip(times, *f.domain)) for f in functions])


def build(name, seed, args, n_parameters=None, n_features=None):
    if name in NETWORKS:
        return Network(name, seed, args.epochs)
    if name == "ridge Cox":
        return SksurvModel(CoxPHSurvivalAnalysis(alpha=100.0))
    if name == "Coxnet":
        return TunedCoxnet()
    if name == "RSF":
        return SksurvModel(
            RandomSurvivalForest(
                n_estimators=args.trees,
                min_samples_leaf=15,
                max_features="sqrt",
                n_jobs=1,
                random_state=0,
            )
        )
    if name == "DeepSurv":
        return DeepSurv(DeepSurv.matching_width(n_features, n_parameters), seed, args.epochs)
    raise ValueError(name)


# ------------------------------------------------------------------------- metrics
def _cindex(y, risk) -> float:
    return concordance_index_censored(_event(y), _time(y), risk)[0]


def brier_times(y_train, y_test, n=20) -> np.ndarray:
    low, high = np.quantile(_time(y_test), [0.1, 0.8])
    high = min(high, _time(y_train).max())
    return np.linspace(low, high, n)


def ibs(model, X_test, y_train, y_test) -> float:
    times = brier_times(y_train, y_test)
    return integrated_brier_score(y_train, y_test, model.survival(X_test, times), times)


# ---------------------------------------------------------------------------- runs
@dataclass
class Results:
    # (dataset, model, condition) -> fold -> list over seeds of C
    cindex: dict = field(default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    brier: dict = field(default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    seconds: dict = field(default_factory=lambda: defaultdict(list))
    notes: list = field(default_factory=list)


def prepare(X_train, X_tests):
    """Preprocessors fitted on the training rows; transformed (train, tests) for both kinds."""
    out = {}
    for kind in ("nan", "impute"):
        prep = ModalityPreprocessor(n_components=N_COMPONENTS, missing=kind, random_state=0)
        prep.set_output(transform="pandas").fit(X_train)
        out[kind] = (prep.transform(X_train), {k: prep.transform(X) for k, X in X_tests.items()})
    return out


def fit_fold(dataset, k, X_train, y_train, y_test, X_tests, condition, models, args, results):
    """Fit every model on one training fold; score it on every test variant."""
    data = prepare(X_train, X_tests)
    n_parameters = {}
    for name in models:
        kind = "nan" if name in NETWORKS else "impute"
        X_fit, tests = data[kind]
        if name == "DeepSurv" and "mamba" not in n_parameters:
            probe = Network("mamba", 0, 1).fit(data["nan"][0], y_train)
            n_parameters["mamba"] = probe.n_parameters
        seeds = range(args.seeds) if name in SEEDED else [0]
        for seed in seeds:
            model = build(name, seed, args, n_parameters.get("mamba"), X_fit.shape[1])
            values = X_fit if name in NETWORKS else X_fit.to_numpy()
            start, cpu = time.perf_counter(), time.process_time()
            model.fit(values, y_train)
            results.seconds[dataset.name, name, condition].append(
                (time.perf_counter() - start, time.process_time() - cpu)
            )
            if name in NETWORKS:
                n_parameters[name] = model.n_parameters
            for test_condition, X_test in tests.items():
                values = X_test if name in NETWORKS else X_test.to_numpy()
                key = (dataset.name, name, test_condition if condition == "" else condition)
                results.cindex[key][k].append(_cindex(y_test, model.risk(values)))
                if test_condition == "complete" and condition == "":
                    results.brier[key][k].append(ibs(model, values, y_train, y_test))
    return n_parameters


def run_dataset(dataset, args, results):
    modalities = modality_columns(dataset.X)
    robust = dataset.name in args.robust
    for k, (train, test) in enumerate(dataset.folds):
        start = time.perf_counter()
        X_train, X_test = dataset.X.iloc[train], dataset.X.iloc[test]
        y_train, y_test = dataset.y[train], dataset.y[test]
        X_tests = {"complete": X_test}
        if robust:
            for j, (modality, columns) in enumerate(modalities.items()):
                for rate in TEST_MISSING_RATES:
                    seed = (k, j, round(100 * rate))
                    X_tests[f"test {modality} {rate:.0%}"] = drop_modality(
                        X_test, columns, rate, seed
                    )
        counts = fit_fold(
            dataset, k, X_train, y_train, y_test, X_tests, "", args.models, args, results
        )
        if k == 0:
            width = ModalityPreprocessor(n_components=N_COMPONENTS, missing="impute")
            n_features = width.fit(X_train).transform(X_train).shape[1]
            text = ", ".join(f"{name} {count:,}" for name, count in counts.items())
            if "DeepSurv" in args.models:
                hidden = DeepSurv.matching_width(n_features, counts["mamba"])
                text += (
                    f", DeepSurv {DeepSurv.count(n_features, hidden):,} "
                    f"(2 x {hidden} units on {n_features} columns)"
                )
            results.notes.append(f"{dataset.name}: parameters: {text}")
        if robust and dataset.name in TRAIN_MISSING:
            modality = TRAIN_MISSING[dataset.name]
            seed = (10_000 + k, list(modalities).index(modality))
            X_lacking = drop_modality(X_train, modalities[modality], TRAIN_MISSING_RATE, seed)
            condition = f"train {modality} {TRAIN_MISSING_RATE:.0%}"
            train_models = [m for m in args.models if m in args.train_missing_models]
            fit_fold(
                dataset,
                k,
                X_lacking,
                y_train,
                y_test,
                {"complete": X_test},
                condition,
                train_models,
                args,
                results,
            )
        print(
            f"#   {dataset.name} fold {k + 1}/{len(dataset.folds)}: "
            f"{time.perf_counter() - start:.0f} s",
            file=sys.stderr,
            flush=True,
        )


# -------------------------------------------------------------------------- tables
def summarise(per_fold: dict) -> tuple[float, float]:
    """Mean and sd over folds of the per-fold mean over seeds."""
    folds = [np.mean(v) for v in per_fold.values()]
    return float(np.mean(folds)), float(np.std(folds))


def accuracy_tables(results, datasets, models):
    names = [d.name for d in datasets]
    c_rows, b_rows, t_rows = [], [], []
    for model in models:
        c_row, b_row, t_row = [model], [model], [model]
        for name in names:
            key = (name, model, "complete")
            mean, sd = summarise(results.cindex[key])
            c_row.append(f"{mean:.3f} ± {sd:.3f}")
            if results.brier[key]:
                mean, sd = summarise(results.brier[key])
                b_row.append(f"{mean:.3f} ± {sd:.3f}")
            else:
                b_row.append("n/a")
            wall, cpu = np.mean(results.seconds[name, model, ""], axis=0)
            t_row.append(f"{wall:.2f} ({cpu:.2f})")
        c_rows.append(c_row)
        b_rows.append(b_row)
        t_rows.append(t_row)
    header = ["model", *names]
    return [
        ("Harrell's C, mean ± sd over test folds (higher is better)", header, c_rows),
        ("Integrated Brier score, mean ± sd over test folds (lower is better)", header, b_rows),
        ("Seconds per fit, mean: wall (CPU), one torch thread", header, t_rows),
    ]


def robustness_tables(results, datasets, models):
    tables = []
    for dataset in datasets:
        if dataset.name not in ROBUST_DATASETS or not any(
            key[0] == dataset.name and key[2] != "complete" for key in results.cindex
        ):
            continue
        conditions = list(dict.fromkeys(key[2] for key in results.cindex if key[0] == dataset.name))
        rows = []
        for condition in conditions:
            row = [condition]
            for model in models:
                per_fold = results.cindex.get((dataset.name, model, condition))
                row.append(f"{summarise(per_fold)[0]:.3f}" if per_fold else "-")
            rows.append(row)
        title = f"{dataset.name}: Harrell's C with a modality missing (mean over folds)"
        tables.append((title, ["missing", *models], rows))
    return tables


def render(title, header, rows, style="text") -> str:
    if style == "md":
        lines = [f"**{title}**", "", "| " + " | ".join(header) + " |"]
        lines.append("|" + "|".join("---" for _ in header) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines) + "\n"
    widths = [max(len(str(r[j])) for r in [header, *rows]) for j in range(len(header))]

    def line(cells):
        first = f"{cells[0]:<{widths[0]}}"
        rest = [f"{c:>{w}}" for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    if style == "rst":
        rule = "  ".join("=" * w for w in widths)
        body = [title, "", rule, line(header), rule, *map(line, rows), rule]
        return "\n".join(body) + "\n"
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([title, line(header), rule, *map(line, rows)]) + "\n"


# ---------------------------------------------------------------------------- main
def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                cpu = text.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def load_average() -> str:
    # wall times on a shared machine move with the other jobs: say how busy it was
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def warm_up(args):
    """Untimed fits: the first optimizer of a process imports torch._dynamo (seconds)."""
    X, y = make_multimodal_survival(48, modalities={"a": 4, "b": 4}, random_state=0)
    Network("mamba", 0, 1).fit(X, y)
    DeepSurv(8, 0, 1).fit(X.to_numpy(), y)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument(
        "--seeds", type=int, default=3, help="seeds of the networks and DeepSurv (default 3)"
    )
    parser.add_argument(
        "--tcga",
        type=Path,
        default=REPO / "../shared/data/tcga",
        help="folder of the TCGA cohorts and their splits (default ../shared/data/tcga "
        "from the repository root)",
    )
    parser.add_argument("--out", type=Path, help="also write the tables here (.md, .rst, text)")
    parser.add_argument("--quick", action="store_true", help="smoke run: under a minute")
    parser.add_argument(
        "--robust",
        nargs="*",
        default=list(ROBUST_DATASETS),
        choices=ROBUST_DATASETS,
        help="data sets of the missing-modality table (default: synthetic gbmlgg breast)",
    )
    parser.add_argument(
        "--train-missing-models",
        nargs="*",
        default=["mamba", "ridge Cox", "Coxnet", "RSF", "DeepSurv"],
        choices=MODELS,
        help="models refitted with 30 %% of the training patients lacking a modality",
    )
    parser.add_argument("--repeats", type=int, default=2, help="repeats of breast's 5-fold CV")
    args = parser.parse_args(argv)
    args.epochs, args.trees, args.n_folds, args.n_synthetic = 30, 100, 5, 300
    if args.quick:
        args.datasets = ["synthetic"]
        args.seeds, args.epochs, args.trees, args.n_folds, args.n_synthetic = 1, 3, 20, 2, 160
    args.robust = [d for d in args.robust if d in args.datasets]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    threadpool_limits(limits=1, user_api="blas")
    torch.set_num_threads(1)
    header = [
        "command: " + " ".join(["python", *sys.argv]),
        f"machine: {machine()}; python {platform.python_version()}; at start {load_average()}",
        f"torch {torch.__version__} ({torch.get_num_threads()} thread), scikit-survival "
        f"{sksurv.__version__}, pycox {pycox.__version__}, scikit-learn {sklearn.__version__}, "
        f"sksurvfusion {sksurvfusion.__version__}",
        f"networks and DeepSurv: {args.epochs} epochs, seeds 0..{args.seeds - 1}; "
        f"RSF {args.trees} trees",
    ]
    print("\n".join(f"# {h}" for h in header), flush=True)
    datasets = load_datasets(args)
    for dataset in datasets:
        print(f"# {dataset.description}", flush=True)
    warm_up(args)

    results = Results()
    for dataset in datasets:
        start = time.perf_counter()
        run_dataset(dataset, args, results)
        print(f"# {dataset.name} done in {time.perf_counter() - start:.0f} s", flush=True)

    tables = accuracy_tables(results, datasets, args.models)
    tables += robustness_tables(results, datasets, args.models)
    footer = [
        *results.notes,
        f"total {time.perf_counter() - started:.0f} s; at the end {load_average()}",
    ]
    print()
    for table in tables:
        print(render(*table))
    print("\n".join(f"# {n}" for n in footer))
    if args.out is not None:
        style = {".md": "md", ".rst": "rst"}.get(args.out.suffix, "text")
        lines = [*header, *(d.description for d in datasets)]
        intro = "\n".join(lines) + "\n"
        if style == "md":
            intro = "\n".join(f"- {h}" for h in lines) + "\n"
        elif style == "rst":
            intro = "\n".join(f"| {h}" for h in lines) + "\n"
        notes = "\n".join(footer) + "\n"
        body = "\n".join(render(*table, style=style) for table in tables)
        args.out.write_text(intro + "\n" + body + "\n" + notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
