"""Modalities: which columns of ``X`` form which token, and which rows miss it."""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from numbers import Integral

import numpy as np
from pandas.api.types import infer_dtype, is_numeric_dtype, is_object_dtype
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import _safe_indexing
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = [
    "ModalitySelector",
    "check_numeric_columns",
    "embedding_frame",
    "modality_mask",
    "resolve_modalities",
]

SEPARATOR = "__"
_SINGLE_MODALITY = "features"
_NUMERIC_OBJECTS = {"floating", "integer", "mixed-integer-float", "decimal", "boolean", "empty"}
# A table without modality names this wide is most likely several embeddings side by side.
_WIDE_SINGLE_MODALITY = 200


def _describe_rows(rows, limit: int = 5) -> str:
    """``rows [a, b, c] and 4 more``, for row positions or index labels."""
    rows = list(rows)
    shown = ", ".join(str(r) for r in rows[:limit])
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"rows [{shown}]{more}"


def resolve_modalities(
    modalities: Mapping | None,
    feature_names: np.ndarray | None,
    n_features: int,
    *,
    warn: bool = False,
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
    warn : bool, default=False
        Warn about layouts that are most likely mistakes: columns that a dict leaves in
        no modality (they are not used), and every column in one modality although the
        names or the width say there are several.

    Returns
    -------
    dict of str to ndarray of int
        Column positions per modality, in token order.

    Examples
    --------
    >>> import numpy as np
    >>> from sksurvfusion.modality import resolve_modalities
    >>> names = np.array(["mri__0", "mri__1", "pathology__0", "clinical__age"])
    >>> resolve_modalities(None, names, 4)
    {'mri': array([0, 1]), 'pathology': array([2]), 'clinical': array([3])}
    >>> resolve_modalities({"imaging": "^(mri|pathology)__", "clinical": [3]}, names, 4)
    {'imaging': array([0, 1, 2]), 'clinical': array([3])}
    """
    if modalities is None:
        resolved = _modalities_from_prefixes(feature_names, n_features)
        if warn:
            _warn_layout(resolved, feature_names, n_features)
        return resolved
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
    if warn and len(owner) < n_features:
        unused = [c for c in range(n_features) if c not in owner]
        shown = ", ".join(_column_label(c, names) for c in unused[:5])
        warnings.warn(
            f"modalities leaves {len(unused)} of the {n_features} columns of X in no "
            f"modality ({shown}{', ...' if len(unused) > 5 else ''}); they are not used. "
            "Add them to a modality, or drop them from X to silence this warning",
            UserWarning,
            stacklevel=3,
        )
    return resolved


def _warn_nested_names(resolved, feature_names) -> None:
    """Warn about modalities whose columns name several kinds at the second ``"__"`` level:
    a ColumnTransformer's transformer name before the modalities, or several foundation
    models in one token."""
    mixed = {}
    for name, columns in resolved.items():
        parts = [str(feature_names[c]).split(SEPARATOR) for c in columns]
        inner = sorted({p[1] for p in parts if len(p) >= 3})
        if len(inner) > 1:
            mixed[name] = inner
    if not mixed:
        return
    listing = "; ".join(
        f"{name!r} holds {', '.join(inner[:4])}{', ...' if len(inner) > 4 else ''}"
        for name, inner in mixed.items()
    )
    warnings.warn(
        f"modalities whose column names hold several kinds at their second '__' level, each "
        f"read as one token: {listing}. If these are modalities that a ColumnTransformer "
        "prefixed with its transformer's name, pass verbose_feature_names_out=False to it "
        "or use one transformer per modality; if they are embeddings of several foundation "
        "models, keep one per modality with ModalitySelector; to fuse them on purpose, give "
        "modalities={name: columns}",
        UserWarning,
        stacklevel=4,
    )


def _warn_layout(resolved, feature_names, n_features) -> None:
    if feature_names is not None and _SINGLE_MODALITY not in resolved:
        _warn_nested_names(resolved, feature_names)
    if len(resolved) != 1:
        return
    (name,) = resolved
    if name == _SINGLE_MODALITY and n_features >= _WIDE_SINGLE_MODALITY:
        source = (
            "X has no column names"
            if feature_names is None
            else "no column of X is named '<modality>__...'"
        )
        warnings.warn(
            f"{source}, so all its {n_features} columns form one modality (one token). "
            "If they hold several modalities, pass a DataFrame with '<modality>__<k>' "
            "column names (ModalityPreprocessor and set_output(transform='pandas') keep "
            "them) or modalities={name: columns}",
            UserWarning,
            stacklevel=4,
        )


def check_numeric_columns(X) -> None:
    """Raise a ValueError naming the text or categorical columns of a DataFrame.

    Parameters
    ----------
    X : DataFrame or array-like
        Anything without ``columns`` and ``dtypes`` (a plain array) passes.

    Raises
    ------
    ValueError
        If some columns hold neither numbers nor booleans, with the columns named and
        how to encode them.

    Examples
    --------
    >>> import pandas as pd
    >>> from sksurvfusion.modality import check_numeric_columns
    >>> check_numeric_columns(pd.DataFrame({"clinical__age": [61.0, 54.0]}))
    >>> check_numeric_columns(pd.DataFrame({"clinical__stage": ["II", "III"]}))
    Traceback (most recent call last):
    ...
    ValueError: X has columns that are not numeric: 'clinical__stage' (object)...
    """
    columns, dtypes = getattr(X, "columns", None), getattr(X, "dtypes", None)
    if columns is None or dtypes is None:
        return
    bad = [
        (name, str(dtype))
        for name, dtype in zip(columns, dtypes, strict=True)
        if not _is_numeric(X[name], dtype)
    ]
    if bad:
        listing = ", ".join(f"{column!r} ({dtype})" for column, dtype in bad[:8])
        more = f" and {len(bad) - 8} more" if len(bad) > 8 else ""
        raise ValueError(
            f"X has columns that are not numeric: {listing}{more}. Encode them as numbers "
            "first, keeping the modality prefix: e.g. pandas.get_dummies(X, columns=[...], "
            "dtype=float) turns 'clinical__stage' into 'clinical__stage_II', ...; or a "
            "OneHotEncoder in a ColumnTransformer with verbose_feature_names_out=False"
        )


def _is_numeric(column, dtype) -> bool:
    if callable(getattr(dtype, "is_numeric", None)):  # a polars dtype
        return dtype.is_numeric() or str(dtype) == "Boolean"
    if is_object_dtype(dtype):  # numbers stored as objects convert; text does not
        return infer_dtype(column, skipna=True) in _NUMERIC_OBJECTS
    return is_numeric_dtype(dtype)  # numpy and pandas dtypes, booleans included


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


def modality_mask(
    X: np.ndarray, modalities: Mapping[str, np.ndarray], row_labels: Sequence | None = None
) -> np.ndarray:
    """Which modalities each row has: ``True`` where present.

    A modality whose columns are all NaN in a row is missing for that row.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Float features, NaN allowed.
    modalities : dict of str to ndarray of int
        Column positions per modality, as from :func:`resolve_modalities`.
    row_labels : sequence of length n_samples, optional
        Names of the rows in error messages (a DataFrame's index); positions by default.

    Returns
    -------
    mask : ndarray of bool, shape (n_samples, n_modalities)

    Raises
    ------
    ValueError
        If a modality has NaN in only some of its columns for a row, holds an
        infinite value, or a row has no modality present.

    Examples
    --------
    >>> import numpy as np
    >>> from sksurvfusion.modality import modality_mask
    >>> X = np.array([[0.1, 0.2, 1.0], [np.nan, np.nan, 2.0]])
    >>> modality_mask(X, {"mri": np.array([0, 1]), "clinical": np.array([2])})
    array([[ True,  True],
           [False,  True]])
    """
    labels = np.arange(X.shape[0]) if row_labels is None else np.asarray(row_labels, dtype=object)
    mask = np.empty((X.shape[0], len(modalities)), dtype=bool)
    for j, (name, columns) in enumerate(modalities.items()):
        block = X[:, columns]
        infinite = np.isinf(block).any(axis=1)
        if infinite.any():
            rows = _describe_rows(labels[infinite])
            raise ValueError(
                f"modality {name!r} has infinite values in {rows}. Embeddings must be "
                "finite: recompute those rows, or set all the modality's columns to NaN "
                "there to mark it missing. (Values beyond float32's range, about 3.4e38, "
                "become infinite when the estimator converts X to float32.)"
            )
        n_nan = np.isnan(block).sum(axis=1)
        partial = (n_nan > 0) & (n_nan < len(columns))
        if partial.any():
            raise ValueError(
                f"modality {name!r} has NaN in only some of its columns in "
                f"{_describe_rows(labels[partial])}; a missing modality must be NaN in all "
                "its columns. Impute partial gaps first, e.g. with "
                "ModalityPreprocessor(impute_partial='mean') in a pipeline"
            )
        mask[:, j] = n_nan == 0
    empty = ~mask.any(axis=1)
    if empty.any():
        raise ValueError(
            f"{_describe_rows(labels[empty])} have every modality missing (all NaN) "
            f"({', '.join(modalities)}); drop them or provide at least one modality"
        )
    return mask


def embedding_frame(values, modality: str, model: str | None = None, *, index=None, patients=None):
    """One modality's embeddings as a DataFrame with ``<modality>__<model>__<k>`` columns.

    Put the frames of all modalities side by side with :func:`pandas.concat` (``axis=1``)
    to get the ``X`` of :class:`~sksurvfusion.M4SurvivalEstimator`: the columns say which
    modality they belong to, and the rows are aligned on the patient IDs.

    Parameters
    ----------
    values : array-like of shape (n_rows, n_dims)
        The embeddings, one row per patient (or per image); the dtype is kept, so a
        float32 array stays float32.
    modality : str
        The modality name, the first part of every column name; it must not contain
        ``"__"``.
    model : str, optional
        The foundation model's name, the second part of the column names; without it
        the columns are ``<modality>__<k>``.
    index : sequence of length n_rows, optional
        The patient ID of each row (positions ``0..n_rows-1`` by default).
    patients : sequence, optional
        The patient IDs of the output rows, in order. A patient without a row of
        ``values`` gets NaN in every column, which marks the modality as missing for
        that patient; rows of IDs not listed are left out.

    Returns
    -------
    pandas.DataFrame
        Indexed by patient ID, with columns ``<modality>__<model>__0`` to
        ``<modality>__<model>__<n_dims - 1>``.

    Raises
    ------
    ValueError
        If ``values`` is not 2-D, ``modality`` or ``model`` is empty or contains
        ``"__"``, ``index`` has the wrong length, or an ID appears twice in ``index``.

    Examples
    --------
    Slides exist for two of three patients; the third gets NaN, a missing modality:

    >>> import numpy as np
    >>> import pandas as pd
    >>> from sksurvfusion.modality import embedding_frame
    >>> mri = embedding_frame(np.ones((3, 2)), "t1", "medimageinsight", index=["A", "B", "C"])
    >>> slides = embedding_frame(
    ...     np.zeros((2, 2)), "pathology", "uni2h", index=["C", "A"], patients=["A", "B", "C"]
    ... )
    >>> pd.concat([mri, slides], axis=1)
       t1__medimageinsight__0  ...  pathology__uni2h__1
    A                     1.0  ...                  0.0
    B                     1.0  ...                  NaN
    C                     1.0  ...                  0.0
    <BLANKLINE>
    [3 rows x 4 columns]
    """
    import pandas as pd

    for label, name in (("modality", modality), ("model", model)):
        if name is None and label == "model":
            continue
        if not isinstance(name, str) or not name or SEPARATOR in name:
            raise ValueError(
                f"{label} must be a non-empty string without {SEPARATOR!r}, got {name!r}: "
                f"the column names are '<modality>{SEPARATOR}<model>{SEPARATOR}<k>'"
            )
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(
            f"values of modality {modality!r} must be 2-D (one row per patient), got shape "
            f"{values.shape}; reshape a single embedding with values.reshape(1, -1)"
        )
    prefix = modality if model is None else f"{modality}{SEPARATOR}{model}"
    columns = [f"{prefix}{SEPARATOR}{k}" for k in range(values.shape[1])]
    if index is not None:
        index = pd.Index(index)
        if len(index) != values.shape[0]:
            raise ValueError(
                f"index of modality {modality!r} has {len(index)} IDs for {values.shape[0]} "
                "rows of values; give one patient ID per row"
            )
        duplicated = index[index.duplicated()].unique()
        if len(duplicated):
            raise ValueError(
                f"index of modality {modality!r} holds some IDs more than once "
                f"({', '.join(map(str, duplicated[:5]))}); keep one row per patient, e.g. the "
                "mean of a patient's embeddings"
            )
    frame = pd.DataFrame(values, index=index, columns=columns)
    if patients is not None:
        frame = frame.reindex(pd.Index(patients))
    return frame


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

    The output is the input's DataFrame type (pandas or polars) with the kept
    columns and their names; ``set_output(transform="pandas")`` or ``"polars"``,
    or the same global ``sklearn.set_config(transform_output=...)``, converts it.

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
                "ModalitySelector needs a pandas DataFrame (or a polars one) whose columns are "
                f"named '<modality>__<model>__<k>', got {type(X).__name__}"
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
        # the input's own container (pandas or polars) unless set_output asks for another
        return _safe_indexing(X, self._support, axis=1)

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self)
        return np.asarray(self.feature_names_in_[self._support], dtype=object)
