"""Data sets: a real two-modality cohort and a synthetic multi-modal generator.

Both return ``(X, y)``: ``X`` a DataFrame whose column names start with the modality
(``"<modality>__..."``), ``y`` scikit-survival's structured survival array. Nothing is
downloaded: the cohort ships with scikit-survival and the generator needs no data.
"""

from ._breast_cancer import load_breast_cancer
from ._synthetic import make_multimodal_survival

__all__ = ["load_breast_cancer", "make_multimodal_survival"]
