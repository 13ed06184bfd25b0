"""
Quickstart: fit, score and predict survival
===========================================

A patient is one row; each modality is a block of columns named
``"<modality>__<model>__<k>"``. :class:`~sksurvfusion.M4SurvivalEstimator`
encodes every modality into a token, fuses the tokens with a Mamba adapter and
trains a Cox risk head.
"""

import matplotlib.pyplot as plt
from sklearn.model_selection import train_test_split

from sksurvfusion import M4SurvivalEstimator
from sksurvfusion.datasets import make_multimodal_survival

# Synthetic embeddings shaped like MRI and pathology foundation-model outputs
# (narrow here so that the example runs in seconds).
X, y = make_multimodal_survival(
    400, modalities={"mri": 32, "pathology": 32}, n_latent=4, noise=0.5, random_state=0
)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)

model = M4SurvivalEstimator(d_model=32, lr=1e-3, max_epochs=20, random_state=0)
model.fit(X_train, y_train)

print("modalities:", list(model.modalities_))
print(f"held-out Harrell's C: {model.score(X_test, y_test):.3f}")

# Survival curves of three test patients, from the Breslow baseline hazard.
fig, ax = plt.subplots()
for i, fn in enumerate(model.predict_survival_function(X_test.iloc[:3])):
    ax.step(fn.x, fn(fn.x), where="post", label=f"patient {i}")
ax.set(xlabel="time", ylabel="survival probability")
ax.legend()
plt.show()
