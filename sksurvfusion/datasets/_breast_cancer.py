"""The GSE7390 breast cancer cohort with its columns grouped into modalities."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sksurv.datasets import load_breast_cancer as _load_sksurv_breast_cancer
from sksurv.util import Surv

__all__ = ["load_breast_cancer"]

_CLINICAL_COLUMNS = ("age", "er", "grade", "size")

_GRADE_CODES = {
    "well differentiated": 1.0,
    "intermediate": 2.0,
    "poorly differentiated": 3.0,
}
# scikit-survival's data spells the missing grade "unkown"; accept the correct spelling
# too so that a fixed upstream file does not silently turn into an error.
_GRADE_UNKNOWN = ("unkown", "unknown")
# The median of the known grades (30 grade 1, 83 grade 2, 83 grade 3). Imputing keeps the
# clinical modality free of NaN, which the estimator would reject as a partially missing
# modality; the indicator column keeps the information that the grade was not recorded.
_GRADE_IMPUTED = 2.0

_ER_CODES = {"negative": 0.0, "positive": 1.0}


def load_breast_cancer() -> tuple[pd.DataFrame, np.ndarray]:
    """Load the GSE7390 breast cancer cohort as two modalities: genes and clinical data.

    This is scikit-survival's :func:`sksurv.datasets.load_breast_cancer` (198 women with
    node-negative breast cancer, endpoint distant metastasis) with its columns renamed
    into the ``"<modality>__<feature>"`` convention and every column encoded as float64:

    ``genes__<probe>`` (76 columns)
        Affymetrix expression values of the 76-gene signature of Wang et al. The probe
        identifier is scikit-survival's column name without the ``"X"`` that R prepends
        to names starting with a digit (``X200726_at`` becomes ``genes__200726_at``).
    ``clinical__age``
        Age at diagnosis in years.
    ``clinical__er``
        Oestrogen receptor status: 1 positive, 0 negative.
    ``clinical__grade``
        Histological grade as an ordinal number: 1 well differentiated, 2 intermediate,
        3 poorly differentiated. The two patients with an unknown grade get 2, the median
        of the known grades.
    ``clinical__grade_unknown``
        1 for the two patients whose grade was not recorded, 0 otherwise.
    ``clinical__size``
        Tumour size in cm.

    The data has no other missing values, so ``X`` has no NaN.

    Returns
    -------
    X : pandas.DataFrame of shape (198, 81)
        76 ``genes__`` columns followed by 5 ``clinical__`` columns, all float64.
    y : structured ndarray of shape (198,)
        Event indicator (distant metastasis) and time in days, built with
        :meth:`sksurv.util.Surv.from_arrays`.

    See Also
    --------
    sksurv.datasets.load_breast_cancer : The same cohort with the original columns.

    References
    ----------
    .. [1] Desmedt, C., Piette, F., Loi, S., et al., "Strong time dependence of the
           76-gene prognostic signature for node-negative breast cancer patients in the
           TRANSBIG multicenter independent validation series", Clinical Cancer Research,
           13(11), 3207-3214, 2007.

    Examples
    --------
    >>> from sksurvfusion.datasets import load_breast_cancer
    >>> X, y = load_breast_cancer()
    >>> X.shape
    (198, 81)
    >>> sorted({name.split("__")[0] for name in X.columns})
    ['clinical', 'genes']
    >>> X.filter(like="clinical__").columns.tolist()  # doctest: +NORMALIZE_WHITESPACE
    ['clinical__age', 'clinical__er', 'clinical__grade', 'clinical__grade_unknown',
     'clinical__size']
    >>> int(y[y.dtype.names[0]].sum())  # patients with distant metastasis
    51
    """
    data, target = _load_sksurv_breast_cancer()

    unexpected = set(data.columns) - set(_CLINICAL_COLUMNS)
    unexpected = {name for name in unexpected if not _is_probe(name)}
    if unexpected:
        raise RuntimeError(
            "scikit-survival's breast cancer data has columns this loader does not know: "
            f"{sorted(unexpected)}."
        )
    probes = [name for name in data.columns if name not in _CLINICAL_COLUMNS]

    genes = data[probes].astype(np.float64)
    # R's make.names put an "X" before probe identifiers, which start with a digit.
    genes.columns = [f"genes__{name[1:]}" for name in probes]

    grade = data["grade"].astype(str)
    grade_unknown = grade.isin(_GRADE_UNKNOWN)
    clinical = pd.DataFrame(
        {
            "clinical__age": data["age"].astype(np.float64),
            "clinical__er": _encode(data["er"], _ER_CODES, "er"),
            "clinical__grade": _encode(
                grade.mask(grade_unknown, None), _GRADE_CODES, "grade"
            ).fillna(_GRADE_IMPUTED),
            "clinical__grade_unknown": grade_unknown.astype(np.float64),
            "clinical__size": data["size"].astype(np.float64),
        },
        index=data.index,
    )
    X = pd.concat([genes, clinical], axis=1)

    # Read the fields by position: their names differ between scikit-survival datasets.
    event_field, time_field = target.dtype.names
    y = Surv.from_arrays(target[event_field], target[time_field])
    return X, y


def _is_probe(name: str) -> bool:
    return name.startswith("X") and name[1:2].isdigit()


def _encode(values: pd.Series, codes: dict[str, float], name: str) -> pd.Series:
    observed = set(values.dropna().astype(str))
    unknown = observed - set(codes)
    if unknown:
        raise RuntimeError(
            f"scikit-survival's breast cancer data has unknown {name!r} categories: "
            f"{sorted(unknown)}."
        )
    return values.astype(object).map(codes).astype(np.float64)
