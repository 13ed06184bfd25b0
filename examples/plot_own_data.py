"""
Your own data: embeddings, a clinical table and missing slides
==============================================================

Embeddings usually arrive as one array per modality (one row per patient,
as a foundation model wrote them), the clinical data as a table with text
columns, and not every patient has every modality. This example builds the
estimator's ``X`` from such pieces with :func:`pandas.concat`, encodes a
categorical column, marks the patients without a pathology slide as missing,
and fits a pipeline that keeps one token per modality.
"""

# %%
# The pieces, as they come from an extraction pipeline
# -----------------------------------------------------
# Stand-ins for arrays you would read with :func:`numpy.load`: a 64-column MRI
# embedding for every patient, a 96-column pathology embedding only for the
# patients with a slide, a clinical table with a text column, and the follow-up.
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sksurv.util import Surv

from sksurvfusion import M4SurvivalEstimator
from sksurvfusion.datasets import make_multimodal_survival
from sksurvfusion.modality import embedding_frame
from sksurvfusion.plotting import plot_risk_groups

rng = np.random.default_rng(0)
source, target, true_risk = make_multimodal_survival(
    400,
    modalities={"mri": 64, "pathology": 96},
    n_latent=4,
    noise=0.5,
    return_risk=True,
    random_state=0,
)
patient_ids = np.array([f"P{i:03d}" for i in range(400)])
mri = source.filter(like="mri__").to_numpy()  # shape (400, 64)
has_slide = rng.random(400) > 0.25
slide_ids = patient_ids[has_slide]
pathology = source.filter(like="pathology__").to_numpy()[has_slide]  # (n_with_slide, 96)
# a prognostic stage and an age, loosely tied to the hazard as real ones are
stage = np.digitize(true_risk + rng.normal(0, 1.0, 400), [-0.5, 0.5])
clinical = pd.DataFrame(
    {
        "age": (62 + 4 * true_risk + rng.normal(0, 9, 400)).round(),
        "stage": np.array(["I", "II", "III"])[stage],
    },
    index=patient_ids,
)
event, time = target["event"], target["time"]

# %%
# One row per patient, columns named ``<modality>__<model>__<k>``
# ---------------------------------------------------------------
# :func:`~sksurvfusion.modality.embedding_frame` makes each array a DataFrame
# indexed by patient ID. Given all patient IDs, it gives the patients without a
# slide rows of NaN: a modality that is NaN in all its columns is *missing* for
# that patient, and its token is masked. The text column is one-hot encoded
# with the ``clinical__`` prefix kept.

X = pd.concat(
    [
        embedding_frame(mri, "mri", "medimageinsight", index=patient_ids),
        embedding_frame(pathology, "pathology", "uni2h", index=slide_ids, patients=patient_ids),
        pd.get_dummies(clinical, columns=["stage"], dtype=float).add_prefix("clinical__"),
    ],
    axis=1,
)
y = Surv.from_arrays(event=event, time=time)
print(X.shape)
print(X.columns[[0, 64, -4, -3, -2, -1]].tolist())
print(f"patients without a slide: {X.filter(like='pathology__').isna().all(axis=1).sum()}")

# %%
# A pipeline that keeps one token per modality
# --------------------------------------------
# The network sees the columns as given, so they are standardised first.
# :class:`~sklearn.preprocessing.StandardScaler` with pandas output keeps the
# column names, and so the three modalities, and leaves the NaN of a missing
# slide in place, so the estimator masks that token. (``lr=1e-3``: a cohort
# this small learns more in 20 epochs with a higher learning rate than the
# default.)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y["event"], random_state=0
)
pipe = make_pipeline(
    StandardScaler().set_output(transform="pandas"),
    M4SurvivalEstimator(lr=1e-3, max_epochs=20, random_state=0),
)
pipe.fit(X_train, y_train)
model = pipe[-1]
print("tokens:", list(model.modalities_))
print(f"held-out C: {pipe.score(X_test, y_test):.3f}")

# %%
# Risk groups of the held-out patients
# ------------------------------------
# :func:`~sksurvfusion.plotting.plot_risk_groups` cuts the predicted risks at
# the 33rd and 66th percentiles of the training risks
# (:meth:`~sksurvfusion.M4SurvivalEstimator.predict_risk_group`) and draws the
# Kaplan-Meier curve of each group. The estimator is the pipeline's last step;
# it is given the preprocessed held-out table. Patients without a slide are
# predicted from their other two tokens.
fig, ax = plt.subplots(figsize=(6.4, 5.2), layout="constrained")
plot_risk_groups(model, pipe[:-1].transform(X_test), y_test, ax=ax)
ax.set_title("held-out patients")
plt.show()

# %%
# What this means
# ---------------
# The estimator read three tokens (``mri``, ``pathology``, ``clinical``) from
# the column names, trained on every patient, slide or not, and ranks new
# patients better than chance. The C is modest: 280 training patients, a
# quarter of them without a slide, and a hazard that needs both embeddings and
# their interaction. Compare it with a Cox model on the same split before
# reading more into it (:ref:`sphx_glr_auto_examples_plot_cox_baseline.py`).
#
# The same table, written to a CSV or Parquet file with its ``time`` and
# ``event`` columns, runs through ``sksurvfusion ablate`` (see
# :ref:`command-line`). The page :ref:`your-data` lists the messages the
# estimator gives for the usual mistakes: text columns, NaN in part of a
# modality, a ``ColumnTransformer`` that renamed every column.
