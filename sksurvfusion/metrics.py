"""Uncertainty of Harrell's C and the contribution of each modality to it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.utils import check_random_state
from sksurv.exceptions import NoComparablePairException
from sksurv.metrics import concordance_index_censored

from sksurvfusion._survival import check_survival_target
from sksurvfusion.modality import resolve_modalities

__all__ = ["ConcordanceIndexCI", "concordance_index_ci", "modality_importance"]


@dataclass(frozen=True)
class ConcordanceIndexCI:
    """Harrell's C with a percentile bootstrap confidence interval.

    Attributes
    ----------
    estimate : float
        Harrell's C on all patients.
    low, high : float
        Bounds of the percentile bootstrap interval.
    standard_error : float
        Standard deviation of the bootstrap C-indices.
    confidence_level : float
        Coverage the interval was computed for.
    bootstrap : ndarray
        C-index of every usable resample, in resampling order (resamples without
        an event or a comparable pair are left out). Equality and hashing use the
        other attributes only.
    """

    estimate: float
    low: float
    high: float
    standard_error: float
    confidence_level: float
    # an array has no single truth value and no hash
    bootstrap: np.ndarray = field(compare=False)

    def __str__(self) -> str:
        level = f"{100 * self.confidence_level:g}%"
        return f"C = {self.estimate:.3f} ({level} CI {self.low:.3f}-{self.high:.3f})"


_UNDEFINED = (
    "Harrell's C is undefined on this y: it has no event, or no event with a later "
    "observed time (no comparable pairs)"
)


def _c_index(event: np.ndarray, time: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's C, or NaN where it is undefined (no event, no comparable pair)."""
    if not event.any():
        return np.nan
    try:
        # scikit-survival divides 0 by 0 when the only events have no later patient
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(concordance_index_censored(event, time, risk)[0])
    except NoComparablePairException:
        return np.nan


def _check_bootstrap(n_bootstrap, confidence_level) -> None:
    if not isinstance(n_bootstrap, Integral) or isinstance(n_bootstrap, bool) or n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be a positive integer, got {n_bootstrap!r}")
    if not isinstance(confidence_level, Real) or not 0 < confidence_level < 1:
        raise ValueError(f"confidence_level must be in (0, 1), got {confidence_level!r}")


def _resamples(n_samples: int, n_bootstrap: int, random_state):
    """Row indices of each bootstrap resample, drawn one resample at a time.

    One ``randint(n_samples, size=n_samples)`` per resample from
    ``check_random_state(random_state)``, so that the resamples can be drawn again
    outside this module, and memory stays O(n_samples).
    """
    rng = check_random_state(random_state)
    for _ in range(n_bootstrap):
        yield rng.randint(n_samples, size=n_samples)


def _percentiles(values: np.ndarray, confidence_level: float) -> tuple[float, float]:
    tail = 100 * (1 - confidence_level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def concordance_index_ci(
    estimator,
    X,
    y,
    *,
    n_bootstrap: int = 1000,
    confidence_level: float = 0.95,
    random_state=None,
) -> ConcordanceIndexCI:
    """Harrell's C of a fitted model with a bootstrap confidence interval.

    The model predicts once; the patients' (risk, event, time) triples are then
    resampled with replacement ``n_bootstrap`` times, and the interval is the
    percentile interval of the resamples' C-indices [1]_. Refitting is not part of
    it: the interval describes the uncertainty of the test set, for a fixed model.

    Parameters
    ----------
    estimator : fitted estimator
        Anything with ``predict(X)`` returning a risk score (higher = shorter
        survival): :class:`~sksurvfusion.M4SurvivalEstimator`, a scikit-survival
        model or pipeline.
    X : DataFrame or array-like of shape (n_samples, n_features)
        Test features.
    y : structured ndarray of shape (n_samples,)
        Test survival target, event indicator first and time second.
    n_bootstrap : int, default=1000
        Number of resamples.
    confidence_level : float, default=0.95
        Coverage of the interval.
    random_state : int, RandomState instance or None, default=None
        Seeds the resampling: resample ``b`` is the ``b``-th
        ``randint(n_samples, size=n_samples)`` of ``check_random_state(random_state)``.

    Returns
    -------
    ConcordanceIndexCI
        ``estimate``, ``low``, ``high``, ``standard_error``, ``confidence_level``
        and the ``bootstrap`` C-indices. Resamples without an event or without a
        comparable pair are skipped.

    Raises
    ------
    ValueError
        If ``y`` has no event or no comparable pair, or no resample is usable.

    See Also
    --------
    sksurv.metrics.concordance_index_censored : Harrell's C.
    modality_importance : Drop in C when a modality is masked.

    References
    ----------
    .. [1] Efron, B. and Tibshirani, R. J., "An Introduction to the Bootstrap",
           Chapman & Hall, 1993, chapter 13.

    Examples
    --------
    >>> from sksurvfusion.baselines import make_cox_baseline
    >>> from sksurvfusion.datasets import load_breast_cancer
    >>> from sksurvfusion.metrics import concordance_index_ci
    >>> X, y = load_breast_cancer()
    >>> model = make_cox_baseline().fit(X[:120], y[:120])
    >>> result = concordance_index_ci(model, X[120:], y[120:], n_bootstrap=100, random_state=0)
    >>> bool(result.low < result.estimate < result.high)
    True
    """
    _check_bootstrap(n_bootstrap, confidence_level)
    event, time = check_survival_target(y, n_samples=len(X))
    risk = np.asarray(estimator.predict(X), dtype=np.float64).reshape(-1)
    estimate = _c_index(event, time, risk)
    if np.isnan(estimate):
        raise ValueError(_UNDEFINED)
    bootstrap = np.array(
        [
            _c_index(event[rows], time[rows], risk[rows])
            for rows in _resamples(len(event), n_bootstrap, random_state)
        ]
    )
    bootstrap = bootstrap[~np.isnan(bootstrap)]
    if bootstrap.size == 0:
        raise ValueError(
            "no bootstrap resample has an event and a comparable pair; the test set is too "
            "small or has too few events for an interval"
        )
    low, high = _percentiles(bootstrap, confidence_level)
    standard_error = float(np.std(bootstrap, ddof=1)) if bootstrap.size > 1 else np.nan
    return ConcordanceIndexCI(
        float(estimate), low, high, standard_error, float(confidence_level), bootstrap
    )


def _float_copy(X):
    """``X`` as a float copy of the same kind (DataFrame or ndarray) that can hold NaN."""
    values = X.to_numpy() if isinstance(X, pd.DataFrame) else np.asarray(X)
    if values.dtype.kind != "f":
        values = values.astype(np.float64)
    else:
        values = values.copy()
    if isinstance(X, pd.DataFrame):
        return pd.DataFrame(values, index=X.index, columns=X.columns, copy=False), values
    return values, values


def modality_importance(
    estimator,
    X,
    y,
    *,
    modalities: Mapping | None = None,
    n_bootstrap: int = 200,
    confidence_level: float = 0.95,
    random_state=None,
) -> pd.DataFrame:
    """Drop in Harrell's C when each modality is masked.

    For each modality the columns are set to NaN in every row, which is how a
    missing modality is given to :class:`~sksurvfusion.M4SurvivalEstimator`
    (its token is masked) and to :func:`~sksurvfusion.make_cox_baseline` (it is
    imputed with its training mean). The importance is the C-index on the
    unmasked data minus the C-index with the modality masked. A row where the
    modality is the only one present cannot be masked (a patient needs one
    modality), so it is kept as it is: every modality is scored on the same
    patients, and ``n_masked`` says on how many the modality was actually masked.

    The spread comes from a paired bootstrap over patients: the same resamples
    score the unmasked and every masked prediction, as in
    :func:`concordance_index_ci`.

    Parameters
    ----------
    estimator : fitted estimator
        Anything with ``predict(X)`` that accepts whole-modality NaN.
    X : DataFrame or array-like of shape (n_samples, n_features)
        Test features.
    y : structured ndarray of shape (n_samples,)
        Test survival target, event indicator first and time second.
    modalities : dict or None, default=None
        Modalities to mask, in the format of ``M4SurvivalEstimator(modalities=...)``.
        ``None`` uses the fitted ``estimator.modalities_`` when it has one, else
        groups ``X``'s columns by their ``"<modality>__"`` prefix.
    n_bootstrap : int, default=200
        Number of resamples.
    confidence_level : float, default=0.95
        Coverage of the interval of the drop.
    random_state : int, RandomState instance or None, default=None
        Seeds the resampling.

    Returns
    -------
    importance : pandas.DataFrame
        One row per modality, sorted by ``drop``, largest first, with columns
        ``modality``, ``n_masked`` (rows where it was masked), ``c_index`` (on
        the unmasked data, the same in every row), ``c_index_masked``, ``drop``,
        ``drop_sd`` (bootstrap standard deviation), ``drop_low`` and ``drop_high``
        (percentile bootstrap interval).

    See Also
    --------
    concordance_index_ci : Bootstrap interval of Harrell's C.

    Examples
    --------
    >>> from sksurvfusion.baselines import make_cox_baseline
    >>> from sksurvfusion.datasets import load_breast_cancer
    >>> from sksurvfusion.metrics import modality_importance
    >>> X, y = load_breast_cancer()
    >>> model = make_cox_baseline().fit(X, y)
    >>> table = modality_importance(model, X, y, n_bootstrap=20, random_state=0)
    >>> sorted(table["modality"])
    ['clinical', 'genes']
    >>> table.columns.tolist()  # doctest: +NORMALIZE_WHITESPACE
    ['modality', 'n_masked', 'c_index', 'c_index_masked', 'drop', 'drop_sd',
     'drop_low', 'drop_high']
    """
    _check_bootstrap(n_bootstrap, confidence_level)
    event, time = check_survival_target(y, n_samples=len(X))
    names = np.asarray(X.columns) if isinstance(X, pd.DataFrame) else None
    if modalities is None:
        modalities = getattr(estimator, "modalities_", None)
    n_features = np.shape(X)[1]
    modalities = resolve_modalities(
        None if modalities is None else dict(modalities), names, n_features
    )
    _, values = _float_copy(X)
    # A row has a modality when any of its columns has a value: a grouping coarser than
    # the estimator's (two contrasts as one) may be partly missing in a row, and
    # masking sets all of it to NaN. The estimator checks its own modalities.
    present = np.column_stack(
        [~np.isnan(values[:, columns]).all(axis=1) for columns in modalities.values()]
    )
    others_present = present.sum(axis=1)[:, None] - present > 0

    risks = {None: np.asarray(estimator.predict(X), dtype=np.float64).reshape(-1)}
    n_masked = {}
    for j, (name, columns) in enumerate(modalities.items()):
        rows = np.flatnonzero(present[:, j] & others_present[:, j])
        masked, masked_values = _float_copy(X)
        masked_values[np.ix_(rows, columns)] = np.nan
        risks[name] = np.asarray(estimator.predict(masked), dtype=np.float64).reshape(-1)
        n_masked[name] = rows.size

    full = {key: _c_index(event, time, risk) for key, risk in risks.items()}
    if np.isnan(full[None]):
        raise ValueError(_UNDEFINED)
    drops = {name: [] for name in modalities}
    for rows in _resamples(len(event), n_bootstrap, random_state):
        baseline = _c_index(event[rows], time[rows], risks[None][rows])
        if np.isnan(baseline):
            continue
        for name in modalities:
            drops[name].append(baseline - _c_index(event[rows], time[rows], risks[name][rows]))

    records = []
    for name in modalities:
        spread = np.asarray(drops[name])
        if spread.size == 0:
            raise ValueError(
                "no bootstrap resample has an event and a comparable pair; the test set is "
                "too small or has too few events"
            )
        low, high = _percentiles(spread, confidence_level)
        records.append(
            {
                "modality": name,
                "n_masked": n_masked[name],
                "c_index": full[None],
                "c_index_masked": full[name],
                "drop": full[None] - full[name],
                "drop_sd": float(np.std(spread, ddof=1)) if spread.size > 1 else np.nan,
                "drop_low": low,
                "drop_high": high,
            }
        )
    table = pd.DataFrame.from_records(records)
    return table.sort_values("drop", ascending=False, kind="stable").reset_index(drop=True)
