"""
Quickstart: fit, score on held-out patients, predict survival
=============================================================

A patient is one row of a table; each modality is a block of columns named
``"<modality>__<model>__<k>"``. :class:`~sksurvfusion.M4SurvivalEstimator`
encodes every modality into one token, fuses the tokens with a Mamba adapter and
trains a bounded Cox risk head. This example splits the patients, fits on one
part, scores the other and draws the predicted survival curves of three new
patients.
"""

# %%
# Data: two modalities of synthetic foundation-model embeddings
# --------------------------------------------------------------
# :func:`~sksurvfusion.datasets.make_multimodal_survival` draws embeddings whose
# hazard depends on both modalities and on an interaction between them. They are
# narrow here (32 columns each) so that the example runs in seconds; real
# MedImageInsight or UNI2-h embeddings have 1024 or 1536 columns.
import matplotlib.pyplot as plt
from sklearn.model_selection import train_test_split

from sksurvfusion import M4SurvivalEstimator
from sksurvfusion.datasets import make_multimodal_survival

X, y = make_multimodal_survival(
    400, modalities={"mri": 32, "pathology": 32}, n_latent=4, noise=0.5, random_state=0
)
print(X.shape, X.columns[[0, -1]].tolist())
print(y[:3])  # event indicator first, observed time second

# %%
# Fit on 75 % of the patients, score the other 25 %
# --------------------------------------------------
# The split is stratified on the event indicator, so that both parts hold the
# same share of events. ``score`` is Harrell's concordance index.
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y["event"], random_state=0
)
model = M4SurvivalEstimator(d_model=32, lr=1e-3, max_epochs=20, random_state=0)
model.fit(X_train, y_train)

print("modalities:", list(model.modalities_))
print(f"Harrell's C on the training patients: {model.score(X_train, y_train):.3f}")
print(f"Harrell's C on held-out patients:     {model.score(X_test, y_test):.3f}")

# %%
# The held-out C is the number to report. The C on the training patients is
# higher because the network has seen their outcomes; on a small cohort it can
# be close to 1 while new patients are ranked little better than by chance.

# %%
# Survival curves of three held-out patients
# ------------------------------------------
# ``predict`` gives the log-hazard (higher means shorter survival);
# ``predict_survival_function`` turns it into survival curves with the
# Breslow estimate of the baseline hazard.
risk = model.predict(X_test.iloc[:3])
fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
for i, fn in enumerate(model.predict_survival_function(X_test.iloc[:3])):
    ax.step(fn.x, fn(fn.x), where="post", label=f"patient {i} (risk {risk[i]:+.2f})")
ax.set(xlabel="time", ylabel="predicted survival probability", ylim=(0, 1.02))
ax.legend()
plt.show()

# %%
# The patient with the highest risk has the lowest curve: the curves are the
# baseline survival raised to the power :math:`e^{\eta}`, so they never cross.
# See :ref:`evaluation` for calibrated scores (integrated Brier score,
# time-dependent AUC) and :ref:`your-data` for building ``X`` from your own
# embeddings.
