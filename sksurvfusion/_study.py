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
from sksurvfusion.modality import ModalitySelector
from sksurvfusion.model_selection import RepeatedSurvivalStratifiedKFold

__all__ = ["StudyResult", "candidate_models", "format_table", "run_study"]

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
) -> dict[str, Pipeline]:
    """The models compared: each adapter (per foundation-model choice) and the Cox baseline."""
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
                        device="cpu",
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


def _brier_times(time_: np.ndarray, event: np.ndarray) -> np.ndarray:
    # inside every test split's follow-up: the 10th to 70th percentiles of event times
    return np.percentile(time_[event], np.linspace(10, 70, 7))


def _fold_scores(model, X, y, train, test, times) -> tuple[float, float]:
    event_field, time_field = y.dtype.names
    y_test = y[test]
    risk = model.predict(X.iloc[test])
    c_index = concordance_index_censored(y_test[event_field], y_test[time_field], risk)[0]
    window = (times >= y_test[time_field].min()) & (times < y_test[time_field].max())
    survival = model.predict_survival_function(X.iloc[test], return_array=False)
    estimate = np.vstack([fn(times[window]) for fn in survival])
    ibs = integrated_brier_score(y[train], y_test, estimate, times[window])
    return c_index, ibs


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
) -> StudyResult:
    """Cross-validate every model, then draw the held-out risk groups of one of them.

    Writes ``results.csv`` (one row per split and model), ``ablation.png``,
    ``risk_groups.png`` and ``report.md`` into ``output``.
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
    _write_report(result, title, len(splits), len(y), int(event.sum()))
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


def _write_report(result: StudyResult, title: str, n_splits, n_patients, n_events) -> None:
    text = f"""# {title}

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
