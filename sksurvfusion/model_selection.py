"""Cross-validation for survival targets and tidy tables of hyper-parameter searches."""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd
from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedKFold

__all__ = ["RepeatedSurvivalStratifiedKFold", "SurvivalStratifiedKFold", "ablation_table"]


def _event_indicator(y) -> np.ndarray:
    """The event indicator of a survival target, read by position."""
    if y is None:
        raise ValueError(
            "survival stratified splits need y: a structured array with the event indicator "
            "as first field, e.g. sksurv.util.Surv.from_arrays(event, time)"
        )
    y = np.asarray(y)
    if y.dtype.names is not None:
        return np.asarray(y[y.dtype.names[0]], dtype=bool)
    if y.ndim == 1:
        # a plain event indicator is accepted too
        return y.astype(bool)
    raise ValueError(
        "y must be a structured survival array (event first, time second) or a 1-D event "
        f"indicator, got an array of shape {y.shape} and dtype {y.dtype}"
    )


class _StratifyOnEvent:
    """Hands scikit-learn's stratified splitters the event indicator instead of ``y``."""

    def split(self, X, y, groups=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Generate indices to split data into training and test set.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : structured ndarray of shape (n_samples,)
            Survival target (event indicator first); a 1-D event indicator also works.
        groups : Ignored
            Present for API consistency.

        Yields
        ------
        train : ndarray
            The training set indices for that split.
        test : ndarray
            The testing set indices for that split.
        """
        return super().split(X, _event_indicator(y), groups)


class SurvivalStratifiedKFold(_StratifyOnEvent, StratifiedKFold):
    """K-fold cross-validation stratified on the event indicator of a survival target.

    :class:`~sklearn.model_selection.StratifiedKFold` cannot stratify
    scikit-survival's structured ``y``; this splitter passes it the event indicator
    (the first field of ``y``), so that every fold holds about the same share of
    events as the whole data set. Censored-heavy cohorts otherwise give folds
    with few events, where the C-index varies wildly.

    Parameters
    ----------
    n_splits : int, default=5
        Number of folds, at least 2.
    shuffle : bool, default=False
        Whether to shuffle each class's samples before splitting.
    random_state : int, RandomState instance or None, default=None
        Seeds the shuffling when ``shuffle`` is True.

    See Also
    --------
    RepeatedSurvivalStratifiedKFold : Repeated with different shuffles.

    Examples
    --------
    >>> from sklearn.model_selection import cross_val_score
    >>> from sksurvfusion.baselines import make_cox_baseline
    >>> from sksurvfusion.datasets import load_breast_cancer
    >>> from sksurvfusion.model_selection import SurvivalStratifiedKFold
    >>> X, y = load_breast_cancer()
    >>> cv = SurvivalStratifiedKFold(3, shuffle=True, random_state=0)
    >>> scores = cross_val_score(make_cox_baseline(), X, y, cv=cv)
    >>> scores.shape
    (3,)
    """


class RepeatedSurvivalStratifiedKFold(_StratifyOnEvent, RepeatedStratifiedKFold):
    """Repeated :class:`SurvivalStratifiedKFold`, with a new shuffle in each repetition.

    Parameters
    ----------
    n_splits : int, default=5
        Number of folds, at least 2.
    n_repeats : int, default=10
        Number of repetitions.
    random_state : int, RandomState instance or None, default=None
        Seeds the shuffles; an int gives the same splits on every call.

    See Also
    --------
    SurvivalStratifiedKFold : A single stratified k-fold split.

    Examples
    --------
    >>> from sksurvfusion.datasets import load_breast_cancer
    >>> from sksurvfusion.model_selection import RepeatedSurvivalStratifiedKFold
    >>> X, y = load_breast_cancer()
    >>> cv = RepeatedSurvivalStratifiedKFold(n_splits=3, n_repeats=2, random_state=0)
    >>> cv.get_n_splits()
    6
    >>> len(list(cv.split(X, y)))
    6
    """


# ModalitySelector's "models" reads better per modality in the singular,
# "model[pathology]", with its meaning spelled out: a modality mapped to None is
# dropped, one left out of the dict keeps all its columns.
_DICT_PARAMS = {"models": ("model", "dropped", "all")}


def ablation_table(search) -> pd.DataFrame:
    """One tidy row per configuration of a fitted hyper-parameter search.

    Parameters
    ----------
    search : fitted GridSearchCV or RandomizedSearchCV
        Any search with a ``cv_results_`` in scikit-learn's format.

    Returns
    -------
    table : pandas.DataFrame
        One row per configuration, indexed by its position in ``cv_results_``
        (index name ``"config"``), sorted by the rank of the refit score (the first
        score when ``refit`` is not a scorer name), best first. Columns:

        - one per searched parameter, named by the shortest ``"__"``-suffix of its
          full name that is unique (``estimator__adapter`` becomes ``adapter``).
          A dict-valued parameter becomes one column per key (``None`` where a
          configuration lacks the key); :class:`~sksurvfusion.ModalitySelector`'s
          ``models`` gives ``model[<modality>]`` columns holding the model's name,
          ``"dropped"`` (mapped to ``None``) or ``"all"`` (left out: every column
          kept). Estimators, functions and classes are shown by their short repr or
          name;
        - per score ``<name>`` (``score`` for a single metric): ``mean_<name>``,
          ``sd_<name>`` (the standard deviation over the splits, as in
          ``cv_results_``) and ``rank_<name>``; with ``return_train_score``, also
          ``mean_train_<name>`` and ``sd_train_<name>``;
        - ``fit_time``: mean seconds per fit.

    See Also
    --------
    sksurvfusion.plotting.plot_ablation : Plot of this table.

    Examples
    --------
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sksurvfusion.baselines import make_cox_baseline
    >>> from sksurvfusion.datasets import load_breast_cancer
    >>> from sksurvfusion.model_selection import SurvivalStratifiedKFold, ablation_table
    >>> X, y = load_breast_cancer()
    >>> search = GridSearchCV(
    ...     make_cox_baseline(),
    ...     {"cox__alpha": [1.0, 10.0], "preprocess__n_components": [4, 16]},
    ...     cv=SurvivalStratifiedKFold(3),
    ... ).fit(X, y)
    >>> table = ablation_table(search)
    >>> table.columns.tolist()
    ['alpha', 'n_components', 'mean_score', 'sd_score', 'rank_score', 'fit_time']
    >>> len(table)
    4
    """
    results = getattr(search, "cv_results_", None)
    if results is None:
        raise ValueError(
            f"ablation_table needs a fitted search with cv_results_, got {type(search).__name__}"
        )
    params = list(results["params"])
    keys = list(dict.fromkeys(k for p in params for k in p))
    short = _short_names(keys)

    columns: dict[str, list] = {}
    for key in keys:
        values = [p.get(key) for p in params]
        if all(isinstance(v, Mapping) or v is None for v in values) and any(values):
            prefix, if_none, if_absent = _DICT_PARAMS.get(short[key], (short[key], None, None))
            inner = list(dict.fromkeys(k for v in values if v for k in v))
            for k in inner:
                cells = []
                for v in values:
                    if v is None or k not in v:
                        cells.append(if_absent)
                    else:
                        cells.append(if_none if v[k] is None else _readable(v[k]))
                columns[f"{prefix}[{k}]"] = cells
        else:
            columns[short[key]] = [_readable(v) for v in values]

    metrics = _metric_names(results)
    for name in metrics:
        suffix = "score" if name is None else name
        test = "test_score" if name is None else f"test_{name}"
        columns[f"mean_{suffix}"] = np.asarray(results[f"mean_{test}"], dtype=float)
        columns[f"sd_{suffix}"] = np.asarray(results[f"std_{test}"], dtype=float)
        columns[f"rank_{suffix}"] = np.asarray(results[f"rank_{test}"], dtype=int)
    for name in metrics:
        train = "train_score" if name is None else f"train_{name}"
        if f"mean_{train}" in results:
            suffix = "score" if name is None else name
            columns[f"mean_train_{suffix}"] = np.asarray(results[f"mean_{train}"], dtype=float)
            columns[f"sd_train_{suffix}"] = np.asarray(results[f"std_{train}"], dtype=float)
    if "mean_fit_time" in results:
        columns["fit_time"] = np.asarray(results["mean_fit_time"], dtype=float)

    table = pd.DataFrame(columns, index=pd.RangeIndex(len(params), name="config"))
    refit = getattr(search, "refit", None)
    sort_by = refit if isinstance(refit, str) and refit in metrics else metrics[0]
    rank = "rank_score" if sort_by is None else f"rank_{sort_by}"
    return table.sort_values(rank, kind="stable")


def _metric_names(results: Mapping) -> list[str | None]:
    """Scorer names in ``cv_results_`` order; ``[None]`` for a single metric."""
    if "mean_test_score" in results:
        return [None]
    return [k[len("mean_test_") :] for k in results if k.startswith("mean_test_")]


def _short_names(keys: list[str]) -> dict[str, str]:
    """Shortest ``"__"``-suffix of each parameter name that no other name shares."""
    parts = {key: key.split("__") for key in keys}
    short = {}
    for key in keys:
        for n in range(1, len(parts[key]) + 1):
            candidate = "__".join(parts[key][-n:])
            clashes = [
                other
                for other in keys
                if other != key and "__".join(parts[other][-n:]) == candidate
            ]
            if not clashes:
                break
        short[key] = candidate
    return short


def _readable(value):
    """A table cell: scalars as they are, everything else as a short string."""
    if value is None or isinstance(value, str | bool | numbers.Number):
        return value
    if callable(value) and hasattr(value, "__name__"):
        # classes, functions, numpy ufuncs
        return value.__name__
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_readable(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "(" + ", ".join(str(_readable(v)) for v in value) + ")"
    # estimators: scikit-learn's repr shows only the parameters that differ from defaults
    return " ".join(repr(value).split())
