"""Validation of survival targets."""

from __future__ import annotations

import numpy as np
from sksurv.util import check_y_survival

__all__ = ["check_survival_target"]


def check_survival_target(
    y, *, n_samples: int | None = None, allow_all_censored: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a scikit-survival target and return ``(event, time)``.

    ``y`` must be a structured array whose first field is the boolean event
    indicator and whose second field is the observed time, as built by
    :meth:`sksurv.util.Surv.from_arrays`. Fields are read by position, never by
    name, so any field names work.

    Parameters
    ----------
    y : structured ndarray of shape (n_samples,)
        Survival target.
    n_samples : int, optional
        Expected number of samples (the number of rows of ``X``).
    allow_all_censored : bool, default=False
        Whether a target without any event is acceptable.

    Returns
    -------
    event : ndarray of bool, shape (n_samples,)
    time : ndarray of float64, shape (n_samples,)

    Raises
    ------
    ValueError
        For a plain (non-structured) array, NaN, infinite or negative times, a
        length that does not match ``n_samples``, or an all-censored target when
        it is not allowed.
    """
    if y is None:
        raise ValueError("requires y to be passed, but the target y is None")
    if not isinstance(y, np.ndarray) or y.dtype.fields is None:
        hint = (
            "; for a DataFrame: sksurv.util.Surv.from_dataframe(event_column, time_column, df)"
            if hasattr(y, "columns")
            else ""
        )
        raise ValueError(
            "y must be a structured array with the event indicator as first field and "
            "the observed time as second field, e.g. "
            "sksurv.util.Surv.from_arrays(event, time); "
            f"got {type(y).__name__}"
            + (f" of dtype {y.dtype}" if hasattr(y, "dtype") else "")
            + hint
        )
    _check_field_order(y)
    _check_times(y)
    try:
        event, time = check_y_survival(y, allow_all_censored=allow_all_censored)
    except ValueError as exc:
        raise ValueError(f"Invalid survival target y: {exc}") from exc
    time = np.asarray(time, dtype=np.float64)
    if n_samples is not None and event.shape[0] != n_samples:
        raise ValueError(f"y has {event.shape[0]} samples but X has {n_samples}: they must match")
    return event.astype(bool, copy=False), time


def _check_field_order(y: np.ndarray) -> None:
    """Name the two usual mistakes in a structured target: fields swapped, event as 0/1."""
    names = y.dtype.names
    if len(names) != 2:
        raise ValueError(
            f"y must have two fields, the event indicator then the observed time; got "
            f"fields {list(names)}. Build it with sksurv.util.Surv.from_arrays(event, time)"
        )
    first, second = y.dtype[0], y.dtype[1]
    if first.kind == "b":
        return
    if second.kind == "b" or (
        second.kind in "iuf"
        and np.isin(y[names[1]], [0, 1]).all()
        and not np.isin(y[names[0]], [0, 1]).all()
    ):
        raise ValueError(
            f"y's first field {names[0]!r} ({first}) is read as the event indicator and its "
            f"second field {names[1]!r} ({second}, 0/1 values) as the observed time: the "
            "event comes first. "
            "Build y with sksurv.util.Surv.from_arrays(event, time)"
        )
    values = y[names[0]]
    if first.kind in "iuf" and np.isin(values, [0, 1]).all():
        raise ValueError(
            f"y's first field {names[0]!r}, the event indicator, holds 0/1 values of dtype "
            f"{first}: it must be boolean. Build y with "
            "sksurv.util.Surv.from_arrays(event.astype(bool), time)"
        )


def _check_times(y: np.ndarray) -> None:
    """NaN, infinite and negative observed times, with the rows that hold them."""
    name = y.dtype.names[1]
    if y.dtype[1].kind not in "iuf":
        return  # scikit-survival's own check names the dtype
    time = y[name].astype(np.float64)
    for problem, bad in (
        ("NaN", np.isnan(time)),
        ("infinite", np.isinf(time)),
        ("negative", time < 0),
    ):
        if bad.any():
            rows = np.flatnonzero(bad)
            shown = ", ".join(str(r) for r in rows[:5])
            more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
            raise ValueError(
                f"Invalid survival target y: its time field {name!r} is {problem} in rows "
                f"[{shown}]{more} (positions); every patient needs an observed time >= 0"
            )
