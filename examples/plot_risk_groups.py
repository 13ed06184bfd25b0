"""
Risk groups and survival curves
===============================

:meth:`~sksurvfusion.M4SurvivalEstimator.predict_risk_group` cuts the predicted
risks at the 33rd and 66th percentiles of the training risks, as in the
M4Survive paper. :func:`~sksurvfusion.plotting.plot_risk_groups` draws the
Kaplan-Meier curve of each group with the log-rank p-value, and
:func:`~sksurvfusion.plotting.plot_survival_curves` the predicted survival of
individual patients.
"""

import matplotlib.pyplot as plt
from sklearn.model_selection import train_test_split

from sksurvfusion import M4SurvivalEstimator
from sksurvfusion.datasets import make_multimodal_survival
from sksurvfusion.plotting import plot_risk_groups, plot_survival_curves

X, y = make_multimodal_survival(
    500, modalities={"mri": 32, "pathology": 32}, n_latent=4, noise=0.5, random_state=0
)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
model = M4SurvivalEstimator(d_model=32, lr=1e-3, max_epochs=20, random_state=0)
model.fit(X_train, y_train)

fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5), layout="constrained")
plot_risk_groups(model, X_test, y_test, ax=left)
plot_survival_curves(model, X_test.iloc[:5], ax=right)
plt.show()
