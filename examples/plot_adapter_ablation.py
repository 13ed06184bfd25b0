"""
Adapter ablation: Mamba, Transformer and MLP fusion
===================================================

The fusion adapter is a parameter, so an ablation is a grid search.
:class:`~sksurvfusion.model_selection.SurvivalStratifiedKFold` keeps the event
rate equal across folds and :func:`~sksurvfusion.model_selection.ablation_table`
turns the search into a tidy table.
"""

import matplotlib.pyplot as plt
from sklearn.model_selection import GridSearchCV

from sksurvfusion import M4SurvivalEstimator
from sksurvfusion.datasets import make_multimodal_survival
from sksurvfusion.model_selection import SurvivalStratifiedKFold, ablation_table
from sksurvfusion.plotting import plot_ablation

X, y = make_multimodal_survival(
    300, modalities={"mri": 32, "pathology": 32}, n_latent=4, noise=0.5, random_state=0
)
search = GridSearchCV(
    M4SurvivalEstimator(d_model=32, lr=1e-3, max_epochs=15, random_state=0),
    {"adapter": ["mamba", "transformer", "mlp"]},
    cv=SurvivalStratifiedKFold(3, shuffle=True, random_state=0),
)
search.fit(X, y)
table = ablation_table(search)
print(table[["adapter", "mean_score", "sd_score"]].to_string(index=False))

plot_ablation(table)
plt.show()
