"""The adapter study behind ``sksurvfusion demo`` and ``sksurvfusion ablate``."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sksurv.metrics import concordance_index_censored, integrated_brier_score
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from sksurvfusion.baselines import make_cox_baseline
from sksurvfusion.estimator import M4SurvivalEstimator
from sksurvfusion.metrics import concordance_index_ci
from sksurvfusion.modality import ModalitySelector, resolve_modalities
from sksurvfusion.model_selection import RepeatedSurvivalStratifiedKFold

__all__ = ["StudyResult", "candidate_models", "describe_modalities", "format_table", "run_study"]

ADAPTERS = {"Mamba": "mamba", "Transformer": "transformer", "MLP": "mlp"}


@dataclass
class StudyResult:
    """What a study measured: one row per split and model, and their summary."""

    scores: pd.DataFrame
    table: pd.DataFrame
    heldout_model: str
    heldout_c_index: str
    output: Path


def candidate_models(
    modalities: Mapping | None = None,
    *,
    foundation_models: Mapping[str, Mapping[str, str | None]] | None = None,
    max_epochs: int = 15,
    random_state: int = 0,
    device: str = "cpu",
) -> dict[str, Pipeline]:
    """The models compared: each adapter (per foundation-model choice) and the Cox baseline.

    Parameters
    ----------
    modalities : dict or None, default=None
        Modality spec of the models, as for :class:`~sksurvfusion.M4SurvivalEstimator`.
    foundation_models : dict of str to dict, default=None
        Label -> ``ModalitySelector`` models; each adds one model of every kind.
    max_epochs : int, default=15
        Training epochs of the networks.
    random_state : int, default=0
        Seed of the networks.
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where the networks train.

    Returns
    -------
    dict of str to Pipeline
        Label -> unfitted model.
    """
    choices = dict(foundation_models) if foundation_models else {"": None}
    models = {}
    for choice, selection in choices.items():
        for label, adapter in ADAPTERS.items():
            steps = [] if selection is None else [("select", ModalitySelector(selection))]
            steps += [
                ("scale", StandardScaler().set_output(transform="pandas")),
                (
                    "model",
                    M4SurvivalEstimator(
                        modalities,
                        adapter=adapter,
                        max_epochs=max_epochs,
                        device=device,
                        random_state=random_state,
                    ),
                ),
            ]
            models[f"{label} {choice}".strip()] = Pipeline(steps)
        cox = make_cox_baseline(modalities)
        if selection is not None:
            cox = Pipeline([("select", ModalitySelector(selection)), ("cox", cox)])
        models[f"Cox (ridge) {choice}".strip()] = cox
    return models


def _brier_times(time_: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # one horizon for all splits: the 10th to 70th percentiles of the event times, and
    # every event time for follow-up so coarse (whole years) that the percentiles coincide
    event_times = np.unique(time_[event])
    return np.unique(np.percentile(time_[event], np.linspace(10, 70, 7))), event_times


def _fold_brier_times(times, train_time: np.ndarray, test_time: np.ndarray) -> np.ndarray:
    # the Brier score needs the censoring distribution of the training split (known up to
    # its largest time) and test patients still at risk (from the first test time)
    low, high = test_time.min(), min(train_time.max(), test_time.max())
    for candidates in times:
        grid = candidates[(candidates >= low) & (candidates < high)]
        if len(grid) >= 2:
            break
    return grid


def _integrated_brier_score(y_train, y_test, survival, times) -> float:
    event_field, time_field = y_train.dtype.names
    train_time = y_train[time_field]
    grid = _fold_brier_times(times, train_time, y_test[time_field])
    if len(grid) < 2:
        return np.nan
    # scikit-survival looks the censoring distribution up at every test time, and it is
    # undefined past the last training time when that time is an event. On a grid below
    # that time, a test patient followed longer is event-free at every grid point, so
    # censoring them there leaves every Brier score unchanged.
    horizon = train_time.max()
    beyond = y_test[time_field] > horizon
    y_test = y_test.copy()
    y_test[event_field] &= ~beyond
    y_test[time_field] = np.minimum(y_test[time_field], horizon)
    estimate = np.vstack([fn(grid) for fn in survival])
    return integrated_brier_score(y_train, y_test, estimate, grid)


def _fold_scores(model, X, y, train, test, times) -> tuple[float, float]:
    event_field, time_field = y.dtype.names
    y_test = y[test]
    risk = model.predict(X.iloc[test])
    c_index = concordance_index_censored(y_test[event_field], y_test[time_field], risk)[0]
    survival = model.predict_survival_function(X.iloc[test], return_array=False)
    return c_index, _integrated_brier_score(y[train], y_test, survival, times)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def describe_modalities(X: pd.DataFrame, modalities: Mapping | None = None) -> list[str]:
    """One line per modality of ``X``: its name and width, and unused columns.

    Parameters
    ----------
    X : DataFrame
        The table the models are fitted on.
    modalities : dict or None, default=None
        Modality spec of the models, as for :class:`~sksurvfusion.M4SurvivalEstimator`.

    Returns
    -------
    list of str
        For example ``"genes: 76 columns"``; a modality missing in some rows also
        says for how many patients, and columns in no modality get a line of their own.
    """
    resolved = resolve_modalities(modalities, np.asarray(X.columns, dtype=object), X.shape[1])
    models = ModalitySelector().fit(X).available_models_
    lines = []
    for name, columns in resolved.items():
        line = f"{name}: {_count(len(columns), 'column')}"
        names = [str(c) for c in X.columns[columns]]
        widths = {
            model: sum(c.startswith(f"{name}__{model}__") for c in names)
            for model in models.get(name, [])
            if model is not None
        }
        if any(widths.values()):
            line += f" ({', '.join(f'{m} {w}' for m, w in widths.items() if w)})"
        missing = int(X.iloc[:, columns].isna().all(axis=1).sum())
        if missing:
            line += f", missing for {_count(missing, 'patient')}"
        lines.append(line)
    used = np.concatenate(list(resolved.values()))
    unused = X.columns[np.setdiff1d(np.arange(X.shape[1]), used)]
    if len(unused):
        shown = ", ".join(map(str, unused[:5])) + (" ..." if len(unused) > 5 else "")
        lines.append(f"not used (in no modality): {_count(len(unused), 'column')}: {shown}")
    return lines


def run_study(
    X: pd.DataFrame,
    y: np.ndarray,
    output: str | Path,
    *,
    models: Mapping[str, object],
    n_splits: int = 5,
    n_repeats: int = 2,
    heldout_model: str = "Mamba",
    title: str = "sksurvfusion study",
    progress: bool = True,
    random_state: int = 0,
    modalities: Mapping | None = None,
) -> StudyResult:
    """Cross-validate every model, then draw the held-out risk groups of one of them.

    Writes ``results.csv`` (one row per split and model), ``ablation.png``,
    ``risk_groups.png`` and ``report.md`` into ``output``.

    Parameters
    ----------
    X : DataFrame
        One row per patient.
    y : structured ndarray
        Survival target, event indicator first.
    output : str or Path
        Folder of the files written.
    models : dict of str to estimator
        Label -> unfitted model, e.g. from :func:`candidate_models`.
    n_splits, n_repeats : int
        Repeated event-stratified K-fold cross-validation.
    heldout_model : str
        Label of the model whose risk groups are drawn on a held-out quarter.
    title : str
        Heading of the report and the figures.
    progress : bool, default=True
        Show a progress bar.
    random_state : int, default=0
        Seed of the splits and of the bootstrap interval.
    modalities : dict or None, default=None
        Modality spec of the models, for the report's list of modalities.

    Returns
    -------
    StudyResult

    Notes
    -----
    The integrated Brier score of a split is taken on the 10th to 70th percentiles of
    the event times of the whole table (on every event time where fewer than two
    percentiles differ) that lie inside both the split's test times and its training
    follow-up, where scikit-survival's censoring weights are defined; a split with
    fewer than two such times has no score (NaN).
    """
    # late imports keep `import sksurvfusion` free of matplotlib's start-up cost
    from matplotlib.figure import Figure

    from sksurvfusion.plotting import plot_ablation, plot_risk_groups

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    event_field, time_field = y.dtype.names
    event, time_ = y[event_field].astype(bool), y[time_field].astype(float)
    times = _brier_times(time_, event)
    cv = RepeatedSurvivalStratifiedKFold(
        n_splits=n_splits, n_repeats=n_repeats, random_state=random_state
    )
    splits = list(cv.split(X, y))

    rows = []
    with (
        threadpool_limits(limits=1, user_api="blas"),
        tqdm(total=len(splits) * len(models), desc="fits", disable=not progress) as bar,
    ):
        for split, (train, test) in enumerate(splits):
            for name, template in models.items():
                bar.set_postfix_str(name)
                model = clone(template)
                start = time.perf_counter()
                model.fit(X.iloc[train], y[train])
                seconds = time.perf_counter() - start
                c_index, ibs = _fold_scores(model, X, y, train, test, times)
                rows.append((name, split, c_index, ibs, seconds))
                bar.update()
    scores = pd.DataFrame(rows, columns=["model", "split", "c_index", "ibs", "fit_seconds"])
    scores.to_csv(output / "results.csv", index=False)

    grouped = scores.groupby("model", sort=False)
    table = pd.DataFrame(
        {
            "mean_c_index": grouped["c_index"].mean(),
            "sd_c_index": grouped["c_index"].std(ddof=0),
            "mean_ibs": grouped["ibs"].mean(),
            "sd_ibs": grouped["ibs"].std(ddof=0),
            "fit_time": grouped["fit_seconds"].mean(),
        }
    ).sort_values("mean_c_index", ascending=False)
    table.index.name = "model"
    table = table.reset_index()

    figure = Figure(figsize=(6.4, 1.4 + 0.4 * len(table)), layout="constrained")
    ax = plot_ablation(table, figure.add_subplot(), score="c_index")
    # one parameter, the model: name each row by its model alone
    ax.set_yticklabels([t.get_text().removeprefix("model=") for t in ax.get_yticklabels()])
    ax.set_xlabel("Harrell's C (mean ± sd over splits)")
    ax.set_title(f"{title}: Harrell's C over {len(splits)} splits")
    figure.savefig(output / "ablation.png", dpi=120, bbox_inches="tight")

    train, test = train_test_split(
        np.arange(len(y)), test_size=0.25, stratify=event, random_state=random_state
    )
    model = clone(models[heldout_model]).fit(X.iloc[train], y[train])
    interval = concordance_index_ci(
        model, X.iloc[test], y[test], n_bootstrap=500, random_state=random_state
    )
    figure = Figure(figsize=(6.4, 5.6), layout="constrained")
    ax = plot_risk_groups(
        _final_step(model), _before_final(model, X.iloc[test]), y[test], figure.add_subplot()
    )
    ax.set_title(f"{heldout_model}: risk groups of {len(test)} held-out patients")
    figure.savefig(output / "risk_groups.png", dpi=120, bbox_inches="tight")

    result = StudyResult(scores, table, heldout_model, str(interval), output)
    _write_report(
        result, title, len(splits), len(y), int(event.sum()), describe_modalities(X, modalities)
    )
    return result


def _final_step(model):
    return model[-1] if isinstance(model, Pipeline) else model


def _before_final(model, X):
    return model[:-1].transform(X) if isinstance(model, Pipeline) else X


def format_table(table: pd.DataFrame) -> str:
    """The study's summary as aligned text: mean ± sd of C-index and Brier score."""
    lines = [f"{'model':<28} {'C-index':>15} {'integrated Brier':>18} {'fit (s)':>8}"]
    for row in table.itertuples(index=False):
        lines.append(
            f"{row.model:<28} {row.mean_c_index:>7.3f} ± {row.sd_c_index:.3f} "
            f"{row.mean_ibs:>10.3f} ± {row.sd_ibs:.3f} {row.fit_time:>8.2f}"
        )
    return "\n".join(lines)


def _write_report(
    result: StudyResult, title: str, n_splits, n_patients, n_events, modality_lines
) -> None:
    modality_list = "\n".join(f"- {line}" for line in modality_lines)
    text = f"""# {title}

Modalities:

{modality_list}

{n_patients} patients, {n_events} events; repeated event-stratified cross-validation
({n_splits} splits). Mean ± sd over splits of Harrell's C (higher is better) and the
integrated Brier score (lower is better).

```
{format_table(result.table)}
```

Held-out split (25 % of the patients, stratified on the event), model
**{result.heldout_model}**: {result.heldout_c_index}.

Files: `results.csv` (every split and model), `ablation.png` (C-index per model),
`risk_groups.png` (Kaplan-Meier curves of the predicted risk groups on the held-out
patients, with the log-rank p-value).
"""
    (result.output / "report.md").write_text(text)
