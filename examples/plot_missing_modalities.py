"""
Missing modalities
==================

A modality whose columns are all NaN in a row is missing for that patient: its
token is replaced by a learned mask token, in training and in prediction. Here
30 % of the patients have no pathology slide; the model trains on all of them
and predicts with any subset of modalities.
:func:`~sksurvfusion.metrics.modality_importance` measures how much each
modality contributes by masking it.
"""

import numpy as np

from sksurvfusion import M4SurvivalEstimator
from sksurvfusion.datasets import make_multimodal_survival
from sksurvfusion.metrics import modality_importance

shape = {"modalities": {"mri": 32, "pathology": 32}, "n_latent": 4, "noise": 0.5}
X, y = make_multimodal_survival(400, missing_rate={"pathology": 0.3}, random_state=0, **shape)
X_test, y_test = make_multimodal_survival(200, random_state=1, **shape)
print(f"patients without pathology: {X.filter(like='pathology__').isna().all(axis=1).mean():.0%}")

model = M4SurvivalEstimator(d_model=32, lr=1e-3, max_epochs=20, random_state=0).fit(X, y)
print(f"test C, all modalities:  {model.score(X_test, y_test):.3f}")

radiology_only = X_test.copy()
radiology_only.loc[:, radiology_only.columns.str.startswith("pathology__")] = np.nan
print(f"test C, radiology only:  {model.score(radiology_only, y_test):.3f}")

print(modality_importance(model, X_test, y_test, n_bootstrap=100, random_state=0))
