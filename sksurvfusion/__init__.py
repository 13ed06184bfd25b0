"""Multi-modal survival prediction from foundation-model embeddings.

One scikit-learn estimator, :class:`M4SurvivalEstimator`, encodes each
modality (a group of columns, typically a foundation-model embedding) into a
token, fuses the tokens with a Mamba, Transformer or MLP adapter and trains a
bounded risk head, with a linear Cox term beside it, on the Cox partial
likelihood.
"""

__version__ = "0.1.0.dev0"

from sksurvfusion._persistence import load_pipeline, save_pipeline
from sksurvfusion.baselines import make_cox_baseline
from sksurvfusion.estimator import M4SurvivalEstimator
from sksurvfusion.modality import ModalitySelector

__all__ = [
    "M4SurvivalEstimator",
    "ModalitySelector",
    "__version__",
    "load_pipeline",
    "make_cox_baseline",
    "save_pipeline",
]
