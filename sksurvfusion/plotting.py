"""Plots for survival models: risk groups, individual survival curves, ablations.

Every function draws on a matplotlib ``Axes`` (a new figure's when ``ax`` is None)
and returns it; nothing uses pyplot's current-figure state.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import offset_copy
from sklearn.pipeline import Pipeline
from sksurv.compare import compare_survival
from sksurv.nonparametric import kaplan_meier_estimator

from sksurvfusion._survival import check_survival_target

__all__ = ["plot_ablation", "plot_risk_groups", "plot_survival_curves"]

_GROUP_LABELS = ("Low risk", "Intermediate risk", "High risk")
_GROUP_COLORS = ("tab:green", "tab:orange", "tab:red")
# The number-at-risk table under the axes, in points below the axes' bottom edge: a
# fixed distance, whatever the axes' height, so that a layout engine can make room for it.
_AT_RISK_TOP = 40.0
_AT_RISK_ROW = 13.0


def _new_axes(figsize: tuple[float, float]) -> Axes:
    # Figure, not pyplot: no global state, nothing to close for a caller that keeps the Axes
    return Figure(figsize=figsize, layout="constrained").add_subplot()


def _risk_groups(estimator, X) -> np.ndarray:
    if hasattr(estimator, "predict_risk_group"):
        return np.asarray(estimator.predict_risk_group(X), dtype=int)
    risk = np.asarray(estimator.predict(X), dtype=np.float64)
    # A pipeline ending in the fusion model keeps that model's training cut points.
    final = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else None
    cutpoints = getattr(final, "risk_cutpoints_", None)
    if cutpoints is None:
        # no training cut points (a Cox pipeline): X's own 33rd and 66th percentiles
        cutpoints = np.percentile(risk, [33.0, 66.0])
    return np.digitize(risk, cutpoints).astype(int)


def _format_pvalue(pvalue: float) -> str:
    """The log-rank p-value as the risk-group plot writes it."""
    return "n/a" if np.isnan(pvalue) else f"{pvalue:.3g}"


def plot_risk_groups(
    estimator, X, y, ax: Axes | None = None, *, confidence_level: float = 0.95
) -> Axes:
    """Kaplan-Meier curves of the predicted low, intermediate and high risk groups.

    Patients are grouped by ``estimator.predict_risk_group(X)``: cut at the 33rd
    and 66th percentiles of the training risks for
    :class:`~sksurvfusion.M4SurvivalEstimator`, also at the end of a
    :class:`~sklearn.pipeline.Pipeline`; a model without training cut points (such
    as :func:`~sksurvfusion.make_cox_baseline`) is cut at the same percentiles of
    its risks on ``X``. Each group gets its Kaplan-Meier
    curve with a pointwise log-log confidence band, the table of patients at risk
    is written under the time axis, and the legend's title gives the p-value of
    the log-rank test of equal survival across the groups.

    Parameters
    ----------
    estimator : fitted estimator
        With ``predict_risk_group(X)`` (0 low, 1 intermediate, 2 high) or
        ``predict(X)``.
    X : DataFrame or array-like of shape (n_samples, n_features)
        Features of the patients to plot.
    y : structured ndarray of shape (n_samples,)
        Their survival target, event indicator first and time second.
    ax : matplotlib.axes.Axes, default=None
        Axes to draw on; ``None`` creates a figure.
    confidence_level : float, default=0.95
        Coverage of the confidence bands.

    Returns
    -------
    ax : matplotlib.axes.Axes
        The curves are labelled ``"<group> (n=<size>)"``; the legend title is
        ``"log-rank p = <p>"`` with ``p`` to 3 significant digits.

    See Also
    --------
    sksurv.nonparametric.kaplan_meier_estimator : The curves and their bands.
    sksurv.compare.compare_survival : The log-rank test.

    Examples
    --------
    >>> from sksurvfusion.baselines import make_cox_baseline
    >>> from sksurvfusion.datasets import load_breast_cancer
    >>> from sksurvfusion.plotting import plot_risk_groups
    >>> X, y = load_breast_cancer()
    >>> model = make_cox_baseline().fit(X, y)
    >>> ax = plot_risk_groups(model, X, y)
    >>> ax.get_legend().get_title().get_text().startswith("log-rank p = ")
    True
    """
    event, time = check_survival_target(y, n_samples=len(X))
    groups = _risk_groups(estimator, X)
    if ax is None:
        ax = _new_axes((6.4, 5.2))

    shown = [g for g in range(len(_GROUP_LABELS)) if np.any(groups == g)]
    for g in shown:
        in_group = groups == g
        times, survival, (low, high) = kaplan_meier_estimator(
            event[in_group], time[in_group], conf_level=confidence_level, conf_type="log-log"
        )
        # every curve starts at S(0) = 1
        times = np.concatenate([[0.0], times])
        survival, low, high = (np.concatenate([[1.0], v]) for v in (survival, low, high))
        label = f"{_GROUP_LABELS[g]} (n={in_group.sum()})"
        ax.step(times, survival, where="post", color=_GROUP_COLORS[g], label=label)
        ax.fill_between(times, low, high, step="post", color=_GROUP_COLORS[g], alpha=0.2, lw=0)

    pvalue = np.nan
    if len(shown) > 1:
        # compare_survival reads y's fields by position
        pvalue = compare_survival(y, groups)[1]
    ax.legend(title=f"log-rank p = {_format_pvalue(pvalue)}", loc="lower left")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(0, time.max())
    ax.set_xlabel("Time")
    ax.set_ylabel("Survival probability")

    ticks = [t for t in MaxNLocator(nbins=5).tick_values(0, time.max()) if 0 <= t <= time.max()]
    ax.set_xticks(ticks)
    _add_at_risk_table(ax, ticks, [time[groups == g] for g in shown], shown)
    return ax


def _add_at_risk_table(ax: Axes, ticks, group_times, shown) -> None:
    """Numbers at risk under the x tick labels: one row per group, one column per tick."""

    def below(transform, points, left=0.0):
        return offset_copy(transform, fig=ax.figure, x=-left, y=-points, units="points")

    header = below(ax.transAxes, _AT_RISK_TOP)
    ax.text(0, 0, "Number at risk", transform=header, ha="left", va="top", size="small")
    for row, (g, times) in enumerate(zip(shown, group_times, strict=True), start=1):
        points = _AT_RISK_TOP + row * _AT_RISK_ROW
        ax.text(
            0,
            0,
            _GROUP_LABELS[g].split()[0],
            transform=below(ax.transAxes, points, left=12.0),
            ha="right",
            va="top",
            size="small",
            color=_GROUP_COLORS[g],
        )
        # x in data coordinates, aligned with the ticks
        counts = below(ax.get_xaxis_transform(), points)
        for tick in ticks:
            ax.text(
                tick,
                0,
                str(int(np.sum(times >= tick))),
                transform=counts,
                ha="center",
                va="top",
                size="small",
                gid="at-risk",
            )


def plot_survival_curves(
    estimator, X, ax: Axes | None = None, *, labels=None, legend: bool | None = None
) -> Axes:
    """Predicted survival function of each patient, one step curve per row of ``X``.

    Parameters
    ----------
    estimator : fitted estimator
        With ``predict_survival_function(X)`` returning scikit-survival
        :class:`~sksurv.functions.StepFunction` objects.
    X : DataFrame or array-like of shape (n_samples, n_features)
        The patients; a handful, since each gets a curve.
    ax : matplotlib.axes.Axes, default=None
        Axes to draw on; ``None`` creates a figure.
    labels : sequence of str, default=None
        One label per row; ``None`` uses ``X``'s index (row numbers for an array).
    legend : bool, default=None
        Whether to draw a legend; ``None`` draws one for at most 10 patients.

    Returns
    -------
    ax : matplotlib.axes.Axes

    Examples
    --------
    >>> from sksurvfusion.baselines import make_cox_baseline
    >>> from sksurvfusion.datasets import load_breast_cancer
    >>> from sksurvfusion.plotting import plot_survival_curves
    >>> X, y = load_breast_cancer()
    >>> model = make_cox_baseline().fit(X, y)
    >>> ax = plot_survival_curves(model, X.iloc[:3])
    >>> [line.get_label() for line in ax.get_lines()]
    ['0', '1', '2']
    """
    functions = estimator.predict_survival_function(X)
    if labels is None:
        labels = X.index if isinstance(X, pd.DataFrame) else range(len(functions))
    labels = [str(label) for label in labels]
    if len(labels) != len(functions):
        raise ValueError(f"got {len(labels)} labels for {len(functions)} patients")
    if ax is None:
        ax = _new_axes((6.4, 4.8))
    for function, label in zip(functions, labels, strict=True):
        times = np.asarray(function.x, dtype=np.float64)
        survival = np.asarray(function(times), dtype=np.float64)
        if times[0] > 0:
            times, survival = np.concatenate([[0.0], times]), np.concatenate([[1.0], survival])
        ax.step(times, survival, where="post", label=label)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("Time")
    ax.set_ylabel("Predicted survival probability")
    if legend or (legend is None and len(labels) <= 10):
        ax.legend(title="Patient")
    return ax


def _score_columns(table: pd.DataFrame) -> list[str]:
    return [
        c
        for c in table.columns
        if c.startswith(("mean_", "sd_", "rank_")) or c in ("rank", "fit_time")
    ]


def plot_ablation(table: pd.DataFrame, ax: Axes | None = None, *, score: str | None = None) -> Axes:
    """Mean score with its standard deviation over the splits, one point per configuration.

    Parameters
    ----------
    table : pandas.DataFrame
        As returned by :func:`~sksurvfusion.model_selection.ablation_table`.
        Configurations are drawn top to bottom in the table's order (best first).
    ax : matplotlib.axes.Axes, default=None
        Axes to draw on; ``None`` creates a figure.
    score : str, default=None
        Score to draw, e.g. ``"score"`` or a scorer name of a multi-metric search
        (the columns ``mean_<score>`` and ``sd_<score>``); ``None`` takes the first.

    Returns
    -------
    ax : matplotlib.axes.Axes
        Its y tick labels name each configuration by its parameter values.

    See Also
    --------
    sksurvfusion.model_selection.ablation_table : The table drawn here.

    Examples
    --------
    >>> import pandas as pd
    >>> from sksurvfusion.plotting import plot_ablation
    >>> table = pd.DataFrame(
    ...     {"adapter": ["mamba", "mlp"], "mean_score": [0.71, 0.66],
    ...      "sd_score": [0.03, 0.04], "rank_score": [1, 2]}
    ... )
    >>> ax = plot_ablation(table)
    >>> [t.get_text() for t in ax.get_yticklabels()]
    ['adapter=mamba', 'adapter=mlp']
    """
    score_columns = _score_columns(table)
    if score is None:
        means = [c for c in score_columns if c.startswith("mean_") and "_train_" not in f"_{c}"]
        if not means:
            raise ValueError("table has no mean_<score> column; pass an ablation_table")
        score = means[0][len("mean_") :]
    mean_column, sd_column = f"mean_{score}", f"sd_{score}"
    if mean_column not in table:
        raise ValueError(f"table has no column {mean_column!r}")
    params = [c for c in table.columns if c not in score_columns]
    # column by column: a row Series would turn integer parameters into floats
    cells = [table[p].astype(object).tolist() for p in params]
    labels = [
        ", ".join(f"{p}={values[i]}" for p, values in zip(params, cells, strict=True)) or str(index)
        for i, index in enumerate(table.index)
    ]
    if ax is None:
        ax = _new_axes((6.4, 1.2 + 0.35 * len(table)))
    positions = np.arange(len(table))
    sd = table[sd_column].to_numpy(dtype=np.float64) if sd_column in table else None
    ax.errorbar(
        table[mean_column].to_numpy(dtype=np.float64),
        positions,
        xerr=sd,
        fmt="o",
        capsize=3,
        label=mean_column,
    )
    ax.set_yticks(positions, labels)
    ax.set_ylim(len(table) - 0.5, -0.5)  # best (first row) at the top
    ax.set_xlabel(f"{score} (mean ± sd over splits)")
    ax.grid(axis="x", alpha=0.3)
    return ax
