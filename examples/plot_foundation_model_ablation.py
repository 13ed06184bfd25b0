"""
Foundation-model ablation with ModalitySelector
===============================================

When the table holds the embeddings of several foundation models per modality
(``mri__medimageinsight__k`` and ``mri__biomedclip__k``, ...),
:class:`~sksurvfusion.ModalitySelector` keeps one model per modality, or drops
a modality. Its single ``models`` parameter makes the choice a grid axis,
crossed here with the adapter.
"""

import pandas as pd
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from sksurvfusion import M4SurvivalEstimator, ModalitySelector
from sksurvfusion.datasets import make_multimodal_survival
from sksurvfusion.model_selection import SurvivalStratifiedKFold, ablation_table

shape = {"modalities": {"mri": 16, "pathology": 16}, "n_latent": 4, "random_state": 0}
X, y = make_multimodal_survival(
    200, model_names={"mri": "medimageinsight", "pathology": "uni2h"}, noise=0.5, **shape
)
# A second, noisier pair of foundation models seeing the same patients.
X_other, _ = make_multimodal_survival(
    200, model_names={"mri": "biomedclip", "pathology": "gigapath"}, noise=1.5, **shape
)
X = pd.concat([X, X_other], axis=1)

pipe = Pipeline(
    [
        ("select", ModalitySelector()),
        ("model", M4SurvivalEstimator(d_model=16, lr=1e-3, max_epochs=10, random_state=0)),
    ]
)
grid = {
    "select__models": [
        {"mri": "medimageinsight", "pathology": "uni2h"},
        {"mri": "biomedclip", "pathology": "gigapath"},
        {"mri": "medimageinsight", "pathology": None},  # radiology only
    ],
    "model__adapter": ["mamba", "mlp"],
}
search = GridSearchCV(pipe, grid, cv=SurvivalStratifiedKFold(3, shuffle=True, random_state=0))
search.fit(X, y)
print(ablation_table(search).drop(columns=["rank_score", "fit_time"]).to_string(index=False))
