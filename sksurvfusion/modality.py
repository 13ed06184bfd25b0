"""Modalities: which columns of ``X`` form which token, and which rows miss it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["ModalitySelector", "modality_mask", "resolve_modalities"]

SEPARATOR = "__"
_SINGLE_MODALITY = "features"


def _describe_rows(rows: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(str(r) for r in rows[:limit])
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"rows [{shown}]{more}"


def resolve_modalities(
    modalities: Mapping | None, feature_names: np.ndarray | None, n_features: int
) -> dict[str, np.ndarray]:
    """Map each modality name to the integer positions of its columns.

    Parameters
    ----------
    modalities : dict or None
        ``None`` groups the columns by the text before their first ``"__"``
        (one modality called ``"features"`` when no column has the prefix).
        A dict maps a modality name to its columns: a list of column names, a
        list of integer positions, a ``slice``, or a regular expression
        (``str``) matched against the column names. Dict order is token order.
    feature_names : ndarray of str or None
        Column names of ``X`` (``None`` for a plain array).
    n_features : int
        Number of columns of ``X``.

    Returns
    -------
    dict of str to ndarray of int
        Column positions per modality, in token order.
    """
    if modalities is None:
        return _modalities_from_prefixes(feature_names, n_features)
    if not isinstance(modalities, Mapping) or len(modalities) == 0:
        raise ValueError(
            "modalities must be None or a non-empty dict mapping a modality name to its "
            f"columns, got {modalities!r}"
        )
    names = None if feature_names is None else list(feature_names)
    resolved = {}
    owner = {}
    for name, spec in modalities.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"modality names must be non-empty strings, got {name!r}")
        columns = _resolve_columns(name, spec, names, n_features)
        for position in columns:
            if position in owner:
                raise ValueError(
                    f"column {_column_label(position, names)} is in both modality "
                    f"{owner[position]!r} and modality {name!r}"
                )
            owner[position] = name
        resolved[name] = columns
    return resolved


def _column_label(position: int, names: list | None) -> str:
    return repr(names[position]) if names is not None else str(position)


def _modalities_from_prefixes(feature_names, n_features) -> dict[str, np.ndarray]:
    if feature_names is None or not any(SEPARATOR in str(c) for c in feature_names):
        return {_SINGLE_MODALITY: np.arange(n_features)}
    unprefixed = [str(c) for c in feature_names if SEPARATOR not in str(c)]
    if unprefixed:
        raise ValueError(
            f"columns {unprefixed[:5]} have no '<modality>__' prefix while others do; "
            "rename them or pass modalities={name: columns}"
        )
    prefixes = np.array([str(c).split(SEPARATOR, 1)[0] for c in feature_names])
    return {
        prefix: np.flatnonzero(prefixes == prefix) for prefix in dict.fromkeys(prefixes.tolist())
    }


def _resolve_columns(name, spec, names, n_features) -> np.ndarray:
    if isinstance(spec, str):
        if names is None:
            raise ValueError(
                f"modality {name!r} is given by the pattern {spec!r}, which needs X with "
                "column names (a pandas DataFrame)"
            )
        pattern = re.compile(spec)
        columns = [i for i, c in enumerate(names) if pattern.search(str(c))]
    elif isinstance(spec, slice):
        columns = list(range(n_features))[spec]
    else:
        spec = list(spec) if not isinstance(spec, np.ndarray) else spec.tolist()
        if all(isinstance(c, Integral) and not isinstance(c, bool) for c in spec):
            out_of_range = [c for c in spec if not -n_features <= c < n_features]
            if out_of_range:
                raise ValueError(
                    f"modality {name!r} has column positions {out_of_range[:5]} outside "
                    f"X's {n_features} columns"
                )
            columns = [c % n_features for c in spec]
        else:
            if names is None:
                raise ValueError(
                    f"modality {name!r} is given by column names, which needs X with "
                    "column names (a pandas DataFrame)"
                )
            lookup = {str(c): i for i, c in enumerate(names)}
            unknown = [c for c in spec if str(c) not in lookup]
            if unknown:
                raise ValueError(f"modality {name!r} names columns not in X: {unknown[:5]}")
            columns = [lookup[str(c)] for c in spec]
    if len(columns) == 0:
        raise ValueError(f"modality {name!r} selects no column of X (spec {spec!r})")
    if len(set(columns)) != len(columns):
        raise ValueError(f"modality {name!r} lists a column twice")
    return np.asarray(columns, dtype=np.intp)


def modality_mask(X: np.ndarray, modalities: Mapping[str, np.ndarray]) -> np.ndarray:
    """Which modalities each row has: ``True`` where present.

    A modality whose columns are all NaN in a row is missing for that row.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Float features, NaN allowed.
    modalities : dict of str to ndarray of int
        Column positions per modality, as from :func:`resolve_modalities`.

    Returns
    -------
    mask : ndarray of bool, shape (n_samples, n_modalities)

    Raises
    ------
    ValueError
        If a modality has NaN in only some of its columns for a row, holds an
        infinite value, or a row has no modality present.
    """
    mask = np.empty((X.shape[0], len(modalities)), dtype=bool)
    for j, (name, columns) in enumerate(modalities.items()):
        block = X[:, columns]
        infinite = np.isinf(block).any(axis=1)
        if infinite.any():
            rows = _describe_rows(np.flatnonzero(infinite))
            raise ValueError(f"modality {name!r} has infinite values in {rows}")
        n_nan = np.isnan(block).sum(axis=1)
        partial = (n_nan > 0) & (n_nan < len(columns))
        if partial.any():
            raise ValueError(
                f"modality {name!r} has NaN in only some of its columns in "
                f"{_describe_rows(np.flatnonzero(partial))}; a missing modality must be NaN "
                "in all its columns (impute partial gaps before fitting)"
            )
        mask[:, j] = n_nan == 0
    empty = ~mask.any(axis=1)
    if empty.any():
        raise ValueError(
            f"{_describe_rows(np.flatnonzero(empty))} have every modality missing (all NaN) "
            f"({', '.join(modalities)}); drop them or provide at least one modality"
        )
    return mask


def _parse_column(column: str) -> tuple[str, str | None]:
    parts = str(column).split(SEPARATOR)
    model = parts[1] if len(parts) >= 3 else None
    return parts[0], model


class ModalitySelector(TransformerMixin, BaseEstimator):
    """Keep one foundation model's embedding per modality, or drop a modality.

    Columns are named ``"<modality>__<model>__<k>"``. For each modality in
    ``models`` the selector keeps the columns of the named model, or drops
    the modality when it maps to ``None``; modalities not in ``models`` pass
    through unchanged. With a single ``models`` parameter a grid search over
    foundation models is a list of dicts.

    Parameters
    ----------
    models : dict of str to (str or None), default=None
        Model to keep per modality, ``None`` to drop it. ``None`` (the whole
        parameter) keeps every column.

    Attributes
    ----------
    available_models_ : dict of str to list of str
        Models found per modality during ``fit``.
    feature_names_in_ : ndarray of str
        Column names seen during ``fit``.
    n_features_in_ : int
        Number of columns seen during ``fit``.

    Examples
    --------
    >>> import pandas as pd
    >>> from sksurvfusion import ModalitySelector
    >>> X = pd.DataFrame(
    ...     [[1.0, 2.0, 3.0, 4.0]],
    ...     columns=["mri__medimageinsight__0", "mri__biomedclip__0",
    ...              "path__uni2h__0", "path__gigapath__0"],
    ... )
    >>> ModalitySelector({"mri": "biomedclip", "path": None}).fit_transform(X).columns.tolist()
    ['mri__biomedclip__0']
    """

    def __init__(self, models: Mapping[str, str | None] | None = None) -> None:
        self.models = models

    @staticmethod
    def _check_frame(X) -> None:
        if not hasattr(X, "columns"):
            raise TypeError(
                "ModalitySelector needs a pandas DataFrame whose columns are named "
                f"'<modality>__<model>__<k>', got {type(X).__name__}"
            )

    def fit(self, X, y=None):
        self._check_frame(X)
        validate_data(self, X, dtype=None, ensure_all_finite=False, skip_check_array=True)
        available: dict[str, list] = {}
        for column in X.columns:
            modality, model = _parse_column(column)
            models = available.setdefault(modality, [])
            if model not in models:
                models.append(model)
        self.available_models_ = available
        self._support = self._select(X.columns)
        return self

    def _select(self, columns) -> np.ndarray:
        models = self.models or {}
        if not isinstance(models, Mapping):
            raise ValueError(f"models must be a dict or None, got {models!r}")
        available = self.available_models_
        unknown = [m for m in models if m not in available]
        if unknown:
            raise ValueError(
                f"ModalitySelector: unknown modalities {unknown}; X has {sorted(available)}"
            )
        for modality, model in models.items():
            if model is not None and model not in available[modality]:
                known = [m for m in available[modality] if m is not None]
                raise ValueError(
                    f"ModalitySelector: modality {modality!r} has no model {model!r}; "
                    f"its models are {known}"
                )
        support = []
        for column in columns:
            modality, model = _parse_column(column)
            if modality in models:
                support.append(models[modality] is not None and model == models[modality])
            else:
                support.append(True)
        support = np.asarray(support, dtype=bool)
        if not support.any():
            raise ValueError("ModalitySelector: the models given drop every column of X")
        return support

    def transform(self, X):
        check_is_fitted(self)
        self._check_frame(X)
        validate_data(
            self, X, dtype=None, ensure_all_finite=False, skip_check_array=True, reset=False
        )
        return X.loc[:, self._support]

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self)
        return np.asarray(self.feature_names_in_[self._support], dtype=object)
