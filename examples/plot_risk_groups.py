"""
Risk groups and survival curves
===============================

:meth:`~sksurvfusion.M4SurvivalEstimator.predict_risk_group` cuts the predicted
risks at the 33rd and 66th percentiles of the *training* risks, as in the
M4Survive paper. :func:`~sksurvfusion.plotting.plot_risk_groups` draws the
Kaplan-Meier curve of each group of held-out patients with the log-rank
p-value and the numbers at risk, and
:func:`~sksurvfusion.plotting.plot_survival_curves` the predicted survival of
individual patients.
"""

# %%
# Fit on 70 % of the patients
# ---------------------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import train_test_split

from sksurvfusion import M4SurvivalEstimator
from sksurvfusion.datasets import make_multimodal_survival
from sksurvfusion.plotting import plot_risk_groups, plot_survival_curves

X, y = make_multimodal_survival(
    500, modalities={"mri": 32, "pathology": 32}, n_latent=4, noise=0.5, random_state=0
)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y["event"], random_state=0
)
model = M4SurvivalEstimator(d_model=32, lr=1e-3, max_epochs=20, random_state=0)
model.fit(X_train, y_train)

groups = model.predict_risk_group(X_test)
print("cut-points (training risks):", np.round(model.risk_cutpoints_, 3))
print("held-out patients per group (low, intermediate, high):", np.bincount(groups))

# %%
# Kaplan-Meier curves per group, and five patients' predicted curves
# ------------------------------------------------------------------
# Pass an ``ax`` to draw into a figure of your own (without one, each function
# makes a new figure and returns its axes).
fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5), layout="constrained")
plot_risk_groups(model, X_test, y_test, ax=left)
left.set_title("held-out patients by predicted risk group")
plot_survival_curves(model, X_test.iloc[:5], ax=right)
right.set_title("predicted survival of five held-out patients")
plt.show()

# %%
# The groups are cut at the training risks, so a held-out set need not split
# into equal thirds. Curves that separate with a small log-rank p-value on
# patients the model has not seen are the evidence that the risk ranks
# patients; the same plot on the training patients says little. The bands are
# pointwise 95 % confidence intervals of each Kaplan-Meier curve.
