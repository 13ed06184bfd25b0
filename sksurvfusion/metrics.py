"""Harrell's C in O(n log n), its uncertainty, and the contribution of each modality to it."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Integral, Real

import numpy as np
import pandas as pd
from sklearn.utils import check_random_state
from sksurv.exceptions import NoComparablePairException
from sksurv.metrics import _check_inputs
from sksurv.metrics import concordance_index_censored as _quadratic_concordance_index

from sksurvfusion._survival import check_survival_target
from sksurvfusion.modality import resolve_modalities

__all__ = [
    "ConcordanceIndexCI",
    "concordance_index_censored",
    "concordance_index_ci",
    "modality_importance",
]


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

    Examples
    --------
    :func:`concordance_index_ci` returns one; it prints as a line for a report:

    >>> import numpy as np
    >>> from sksurvfusion.metrics import ConcordanceIndexCI
    >>> result = ConcordanceIndexCI(0.71, 0.64, 0.78, 0.036, 0.95, np.array([0.70, 0.72]))
    >>> print(result)
    C = 0.710 (95% CI 0.640-0.780)
    >>> result.high - result.low > 0
    True
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


# scikit-survival's loop costs about 25 µs an event, the sorting below a fixed ~0.8 ms on
# small inputs: they meet near 30 events (benchmarks/bench_cindex.py --sizes 10 20 50 100)
_SKSURV_MAX_EVENTS = 30

# Risk windows are found by a few single steps from a first guess; a window that is
# still moving after these many steps (a tolerance wider than many distinct risks) is
# finished by bisection.
_WINDOW_STEPS = 4


def _sorted_groups(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start of every run of equal values in sorted ``values``, and each value's run."""
    starts_run = np.empty(values.size, dtype=bool)
    starts_run[0] = True
    np.not_equal(values[1:], values[:-1], out=starts_run[1:])
    return np.flatnonzero(starts_run), np.cumsum(starts_run) - 1


def _bisect(holds, lo: np.ndarray, hi: np.ndarray, of: np.ndarray) -> np.ndarray:
    """Smallest ``k`` in ``[lo, hi]`` where ``holds(k, of)`` is false.

    ``holds`` must be true then false along ``k``; it is never asked at ``hi``, which
    may be one past the last value.
    """
    lo, hi = lo.copy(), hi.copy()
    active = np.flatnonzero(lo < hi)
    while active.size:
        mid = (lo[active] + hi[active]) // 2
        true = holds(mid, of[active])
        lo[active] = np.where(true, mid + 1, lo[active])
        hi[active] = np.where(true, hi[active], mid)
        active = active[lo[active] < hi[active]]
    return lo


def _first_false(holds, guess: np.ndarray, n_values: int) -> np.ndarray:
    """Exact first index where ``holds(k, q)`` turns false, for every ``q``, from a guess."""
    k = guess.copy()
    of = np.arange(k.size)
    # Down first, then up. A bisection left over from the way down may stop at a k
    # where ``holds`` is true (never asked at its upper end); the way up corrects it,
    # and leaves ``holds(k - 1)`` true, which its own bisection relies on.
    walking = of
    for _ in range(_WINDOW_STEPS):
        walking = walking[k[walking] > 0]
        walking = walking[~holds(k[walking] - 1, walking)]
        k[walking] -= 1
    if walking.size:
        k[walking] = _bisect(holds, np.zeros_like(walking), k[walking], walking)
    walking = of
    for _ in range(_WINDOW_STEPS):
        walking = walking[k[walking] < n_values]
        walking = walking[holds(k[walking], walking)]
        k[walking] += 1
    if walking.size:
        k[walking] = _bisect(holds, k[walking], np.full_like(walking, n_values), walking)
    return k


def _risk_windows(values: np.ndarray, tied_tol) -> tuple[np.ndarray, np.ndarray]:
    """For each distinct risk, where the concordant and the discordant risks begin.

    For the event risk ``values[q]``, the risks ``values[:below[q]]`` make a concordant
    pair with it, ``values[below[q]:above[q]]`` a tied one and ``values[above[q]:]`` a
    discordant one. Both bounds are decided by scikit-survival's own expressions
    (``|a - b| <= tied_tol`` on the risks' dtype), which are monotone in the risk, so
    a tolerance that is not transitive (a ~ b ~ c but not a ~ c) is kept exactly.
    """

    def tied(k, q):
        return np.absolute(values[k] - values[q]) <= tied_tol

    def concordant(k, q):
        return (values[k] < values[q]) & ~tied(k, q)

    def not_discordant(k, q):
        return (values[k] < values[q]) | tied(k, q)

    own = np.arange(values.size)
    # evaluated first so that risks without a subtraction (bool) fail as in sksurv
    self_tied = tied(own, own)
    below, above = own, own + 1
    if tied_tol >= 0:
        # a guess only (float64, maybe rounded); the steps below make it exact
        guess = values.astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            below = np.searchsorted(guess, guess - tied_tol, side="left")
            above = np.searchsorted(guess, guess + tied_tol, side="right")
    below = _first_false(concordant, below, values.size)
    # without ties (a negative or NaN tolerance) the tied window is empty
    above = np.where(self_tied, _first_false(not_discordant, above, values.size), below)
    return below, above


def _count_below_in_suffix(
    ranks: np.ndarray, n_bits: int, starts: np.ndarray, thresholds: np.ndarray
) -> np.ndarray:
    """``#{k >= starts[q] : ranks[k] < thresholds[q]}`` for every query ``q``.

    A wavelet matrix over ``ranks``: one stable partition per bit of the ranks, from the
    highest, and every query follows its threshold's bits down, adding the zeros of its
    range where the threshold has a one. O((n + n_queries) * n_bits), in numpy.
    """
    n = ranks.size
    index = np.int32 if n < np.iinfo(np.int32).max else np.int64
    level_ranks = ranks.astype(index)
    thresholds = thresholds.astype(index)
    lo = starts.astype(index)
    hi = np.full(lo.size, n, dtype=index)
    counts = np.zeros(lo.size, dtype=np.int64)
    zeros_before = np.zeros(n + 1, dtype=index)
    for bit in range(n_bits - 1, -1, -1):
        zero = ((level_ranks >> bit) & 1) == 0
        np.cumsum(zero, dtype=index, out=zeros_before[1:])
        n_zeros = zeros_before[n]
        lo_zeros = zeros_before[lo]
        hi_zeros = zeros_before[hi]
        one = (thresholds >> bit) & 1
        counts += (hi_zeros - lo_zeros) * one
        # arithmetic rather than np.where: the branch on a random bit is what costs
        lo = lo_zeros + one * (n_zeros + lo - 2 * lo_zeros)
        hi = hi_zeros + one * (n_zeros + hi - 2 * hi_zeros)
        if bit:
            level_ranks = np.concatenate(
                (level_ranks[np.flatnonzero(zero)], level_ranks[np.flatnonzero(~zero)])
            )
    return counts


def concordance_index_censored(
    event_indicator, event_time, estimate, tied_tol: float = 1e-8
) -> tuple[np.float64, np.int64, np.int64, np.int64, np.int64]:
    """Harrell's concordance index in O(n log n), exactly as scikit-survival computes it.

    A drop-in replacement of :func:`sksurv.metrics.concordance_index_censored`, whose
    loop over events is quadratic (seconds at 50,000 patients): the same arguments,
    validation, errors and returned tuple, with every count equal, for a million
    patients in well under two seconds.

    A pair is comparable when the patient with the shorter time had an event; an event
    is also comparable with a patient censored at its own time, two events at the same
    time are not. Over the comparable pairs :math:`(i, j)`, :math:`i` the event,

    .. math::

        C = \\frac{\\#\\{\\hat r_i > \\hat r_j\\} + \\frac12 \\#\\{|\\hat r_i - \\hat r_j|
            \\le \\text{tied\\_tol}\\}}{\\#\\text{comparable pairs}},

    where a tied pair is not counted as concordant [1]_.

    Parameters
    ----------
    event_indicator : array-like of bool, shape (n_samples,)
        ``True`` for an event, ``False`` for a censored time.
    event_time : array-like, shape (n_samples,)
        Time of the event or of censoring.
    estimate : array-like, shape (n_samples,)
        Predicted risk: higher means a shorter time to event.
    tied_tol : float, default=1e-8
        Two risks whose absolute difference is at most ``tied_tol`` are tied.

    Returns
    -------
    cindex : numpy.float64
        The concordance index. NaN, with numpy's warning for 0 / 0, when there are
        events but no comparable pair (every event at the last time), as in
        scikit-survival.
    concordant : numpy.int64
        Number of concordant pairs.
    discordant : numpy.int64
        Number of discordant pairs.
    tied_risk : numpy.int64
        Number of comparable pairs with tied risks.
    tied_time : numpy.int64
        Number of comparable pairs with tied times (an event and a patient censored
        at its time).

    Raises
    ------
    ValueError
        For the inputs scikit-survival refuses: lengths that differ, a non-boolean
        ``event_indicator``, fewer than two samples, no event, NaN or infinite values.
    sksurv.exceptions.NoComparablePairException
        When no event has a patient to be compared with.

    See Also
    --------
    sksurv.metrics.concordance_index_censored : The quadratic reference.
    concordance_index_ci : Bootstrap interval of Harrell's C of a fitted model.

    Notes
    -----
    Patients are sorted by time, events before censored patients at the same time, so
    the patients comparable with an event are one suffix of that order. The sorted
    distinct risks give each event a window (concordant below it, tied inside, the
    rest discordant), found with scikit-survival's own comparisons, and the pairs are
    counted at once for all events by a wavelet matrix over the risk ranks in time
    order: O(n log n) time and O(n) memory, all in numpy. Counts are 64-bit integers,
    so they hold the ~5e11 pairs of a million patients exactly.

    References
    ----------
    .. [1] Harrell, F. E., Califf, R. M., Pryor, D. B., Lee, K. L. and Rosati, R. A.,
           "Evaluating the yield of medical tests", JAMA, 247(18), 2543-2546, 1982.

    Examples
    --------
    >>> import numpy as np
    >>> from sksurv.metrics import concordance_index_censored as quadratic
    >>> from sksurvfusion.metrics import concordance_index_censored
    >>> rng = np.random.default_rng(0)
    >>> event = rng.random(2000) < 0.6
    >>> time = rng.integers(1, 100, size=2000).astype(float)  # heavily tied
    >>> risk = rng.integers(0, 10, size=2000) - 0.02 * time
    >>> result = concordance_index_censored(event, time, risk)
    >>> result == quadratic(event, time, risk)
    True
    >>> print(f"C = {result[0]:.3f} over {sum(result[1:4]):,} comparable pairs")
    C = 0.580 over 1,179,603 comparable pairs
    """
    event_indicator, event_time, estimate = _check_inputs(event_indicator, event_time, estimate)
    n = event_time.shape[0]

    # Events first inside a group of equal times: the patients comparable with an event
    # (censored at its time, or with a later time) are then the suffix from the first
    # censored patient of its group.
    by_time = np.argsort(event_time)
    group_start, group = _sorted_groups(event_time[by_time])
    order = by_time[np.argsort(2 * group + ~event_indicator[by_time], kind="stable")]
    event = event_indicator[order]
    risk = estimate[order]
    group_end = np.append(group_start[1:], n)
    censored_start = group_start + np.add.reduceat(event.astype(np.intp), group_start)

    events = np.flatnonzero(event)
    # scikit-survival never visits a last time held by one patient alone
    if group_end[-1] - group_start[-1] == 1 and event[-1]:
        events = events[:-1]
    if events.size == 0:
        raise NoComparablePairException(
            "Data has no comparable pairs, cannot estimate concordance index."
        )
    first = censored_start[group[events]]
    tied_time = np.int64((group_end[group[events]] - first).sum())
    n_comparable = np.int64((n - first).sum())

    by_risk = np.argsort(risk)
    rank_start, sorted_rank = _sorted_groups(risk[by_risk])
    ranks = np.empty(n, dtype=np.intp)
    ranks[by_risk] = sorted_rank
    below, above = _risk_windows(risk[by_risk][rank_start], tied_tol)
    own = ranks[events]
    below, above = below[own], above[own]

    # A window of one distinct risk (the usual case: ties are equal risks) is counted
    # by sorting; only wider windows need a second query of the wavelet matrix.
    live = first < n
    width = above - below
    wide = live & (width > 1)
    counts = _count_below_in_suffix(
        ranks,
        int(rank_start.size).bit_length(),
        np.concatenate((first[live], first[wide])),
        np.concatenate((below[live], above[wide])),
    )
    below_counts, above_counts = np.split(counts, [np.count_nonzero(live)])
    concordant = np.int64(below_counts.sum())
    not_discordant = concordant + above_counts.sum() - below_counts[width[live] > 1].sum()
    single = live & (width == 1)
    if single.any():
        # #{k >= first : ranks[k] == r} = #{ranks <= r} - #{(rank, position) < (r, first)}
        stride = n + 1
        rank_end = np.append(rank_start[1:], n)
        keys = np.sort(ranks * stride + np.arange(n))
        queries = np.sort(below[single] * stride + first[single])
        not_discordant += rank_end[below[single]].sum() - np.searchsorted(keys, queries).sum()
    tied_risk = np.int64(not_discordant - concordant)
    discordant = np.int64(n_comparable - not_discordant)
    # exact in float64 below 2**52 pairs, like scikit-survival's running sums
    numerator = np.float64(concordant) + 0.5 * np.float64(tied_risk)
    return numerator / np.float64(n_comparable), concordant, discordant, tied_risk, tied_time


def _concordance_index(event, time, risk):
    """Harrell's C tuple from the exact implementation that is faster at this size."""
    if np.count_nonzero(event) <= _SKSURV_MAX_EVENTS:
        return _quadratic_concordance_index(event, time, risk)
    return concordance_index_censored(event, time, risk)


_UNDEFINED = (
    "Harrell's C is undefined on this y: it has no event, or no event with a later "
    "observed time (no comparable pairs)"
)


def _c_index(event: np.ndarray, time: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's C, or NaN where it is undefined (no event, no comparable pair)."""
    if not event.any():
        return np.nan
    try:
        # 0 / 0, as in scikit-survival, when the only events have no later patient
        with np.errstate(divide="ignore", invalid="ignore"):
            return float(_concordance_index(event, time, risk)[0])
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
        with warnings.catch_warnings():
            # masking is the point here: a model that imputes a modality it always saw
            # reads these patients as average, which is what the drop measures
            warnings.filterwarnings(
                "ignore", message=".*has no missing indicator", category=UserWarning
            )
            masked_risk = estimator.predict(masked)
        risks[name] = np.asarray(masked_risk, dtype=np.float64).reshape(-1)
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
