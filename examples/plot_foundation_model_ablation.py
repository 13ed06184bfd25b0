"""
Foundation-model ablation with ModalitySelector
===============================================

When the table holds the embeddings of several foundation models per modality
(``mri__medimageinsight__k`` beside ``mri__biomedclip__k``, ...),
:class:`~sksurvfusion.ModalitySelector` keeps one model per modality, or drops
a modality. Its single ``models`` parameter makes the choice one axis of a grid
search, crossed here with the adapter: the shape of the M4Survive paper's
ablation table, on synthetic embeddings.
"""

# %%
# Two foundation models per modality in one table
# -----------------------------------------------
# The second pair of "foundation models" sees the same patients through three
# times more noise, as a weaker encoder would.
import matplotlib.pyplot as plt
import pandas as pd
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from sksurvfusion import M4SurvivalEstimator, ModalitySelector
from sksurvfusion.datasets import make_multimodal_survival
from sksurvfusion.model_selection import SurvivalStratifiedKFold, ablation_table
from sksurvfusion.plotting import plot_ablation

shape = {"modalities": {"mri": 16, "pathology": 16}, "n_latent": 4, "random_state": 0}
X, y = make_multimodal_survival(
    300, model_names={"mri": "medimageinsight", "pathology": "uni2h"}, noise=0.5, **shape
)
X_other, _ = make_multimodal_survival(
    300, model_names={"mri": "biomedclip", "pathology": "gigapath"}, noise=1.5, **shape
)
X = pd.concat([X, X_other], axis=1)
print(sorted({"__".join(c.split("__")[:2]) for c in X.columns}))

# %%
# Foundation models x adapters
# ----------------------------
# A modality mapped to ``None`` is dropped, so ``{"pathology": None}`` is the
# radiology-only row of the table.
pipe = Pipeline(
    [
        ("select", ModalitySelector()),
        (
            "model",
            M4SurvivalEstimator(d_model=16, lr=1e-3, max_epochs=15, pooling="last", random_state=0),
        ),
    ]
)
grid = {
    "select__models": [
        {"mri": "medimageinsight", "pathology": "uni2h"},
        {"mri": "biomedclip", "pathology": "gigapath"},
        {"mri": "medimageinsight", "pathology": None},
    ],
    "model__adapter": ["mamba", "mlp"],
}
search = GridSearchCV(pipe, grid, cv=SurvivalStratifiedKFold(3, shuffle=True, random_state=0))
search.fit(X, y)
table = ablation_table(search)
print(table.drop(columns=["rank_score", "fit_time"]).to_string(index=False))

# %%
fig, ax = plt.subplots(figsize=(8, 4), layout="constrained")
plot_ablation(table, ax=ax)
ax.set_title("3-fold cross-validated Harrell's C")
plt.show()

# %%
# What this means
# ---------------
# ``ablation_table`` spells the ``models`` dict out as one column per modality
# (``model[mri]``, ``model[pathology]``; ``dropped`` where a modality was left
# out). The less noisy pair of embeddings gives the higher C with either
# adapter, and dropping the pathology slide lowers the C with either adapter:
# the hazard here needs both modalities. On real data the same grid
# answers the paper's questions, which foundation model to use for each
# modality and whether a modality is worth acquiring; see
# :ref:`model-selection` for the full grid over MedImageInsight, BiomedCLIP,
# Prov-GigaPath and UNI2-h.
