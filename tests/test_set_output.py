"""The library's transformers and pipelines under scikit-learn's output API.

``sklearn.set_config(transform_output=...)`` and ``set_output(transform=...)``
choose the container a transformer returns; the numbers must not depend on it.
The reference numbers come from scikit-learn's own transformers, fitted by hand
outside any output configuration.
"""

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sksurv.linear_model import CoxnetSurvivalAnalysis, CoxPHSurvivalAnalysis

from sksurvfusion import M4SurvivalEstimator, ModalitySelector
from sksurvfusion.baselines import ModalityPreprocessor, make_cox_baseline
from sksurvfusion.datasets import load_breast_cancer, make_multimodal_survival

N_COMPONENTS = 5  # clinical has 5 columns: standardised only


def _container(output):
    """The DataFrame type that scikit-learn's ``output`` configuration gives."""
    if output == "polars":
        return pytest.importorskip("polars").DataFrame
    return pd.DataFrame


def _to_numpy(frame):
    return np.asarray(frame.to_numpy(), dtype=np.float64)


def _assert_close(actual, expected):
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(actual, expected, rtol=1e-7, atol=1e-9 * scale)


@pytest.fixture(scope="module")
def breast_cancer():
    X, y = load_breast_cancer()
    # string labels, so that a lost or reset index shows
    X = X.set_axis([f"P{i:03d}" for i in range(len(X))], axis=0)
    return X, y


@pytest.fixture(scope="module")
def columns(breast_cancer):
    X, _ = breast_cancer
    return {m: [c for c in X.columns if c.startswith(f"{m}__")] for m in ("genes", "clinical")}


@pytest.fixture(scope="module")
def by_hand(breast_cancer, columns):
    """scikit-learn's per-modality scaling and whitened PCA, as NumPy arrays."""
    return ColumnTransformer(
        [
            (
                "genes",
                make_pipeline(StandardScaler(), PCA(n_components=N_COMPONENTS, whiten=True)),
                columns["genes"],
            ),
            ("clinical", StandardScaler(), columns["clinical"]),
        ]
    ).set_output(transform="default")


@pytest.fixture(scope="module")
def expected(breast_cancer, by_hand):
    X, _ = breast_cancer
    with sklearn.config_context(transform_output="default"):
        return by_hand.fit_transform(X)


@pytest.fixture(scope="module")
def names(columns):
    return [f"genes__pc{k}" for k in range(N_COMPONENTS)] + columns["clinical"]


class TestModalityPreprocessor:
    @pytest.mark.parametrize("output", ["default", "pandas", "polars"])
    def test_global_output_gives_its_container_and_the_same_numbers(
        self, breast_cancer, expected, names, output
    ):
        X, _ = breast_cancer
        container = _container(output)  # "default": the preprocessor's own, pandas
        with sklearn.config_context(transform_output=output):
            prep = ModalityPreprocessor(n_components=N_COMPONENTS)
            fitted = prep.fit_transform(X)
            again = prep.transform(X.iloc[:7])
        for Xt in (fitted, again):
            assert isinstance(Xt, container)
            assert list(Xt.columns) == names
        _assert_close(_to_numpy(fitted), expected)
        _assert_close(_to_numpy(again), expected[:7])
        if container is pd.DataFrame:
            pd.testing.assert_index_equal(fitted.index, X.index)
            pd.testing.assert_index_equal(again.index, X.index[:7])

    @pytest.mark.parametrize("global_output", ["pandas", "polars"])
    @pytest.mark.parametrize("output", ["default", "pandas", "polars"])
    def test_set_output_wins_over_the_global_output(
        self, breast_cancer, expected, names, global_output, output
    ):
        X, _ = breast_cancer
        container = np.ndarray if output == "default" else _container(output)
        _container(global_output)
        with sklearn.config_context(transform_output=global_output):
            prep = ModalityPreprocessor(n_components=N_COMPONENTS).set_output(transform=output)
            Xt = prep.fit_transform(X)
        assert isinstance(Xt, container)
        if container is np.ndarray:
            _assert_close(Xt, expected)
        else:
            assert list(Xt.columns) == names
            _assert_close(_to_numpy(Xt), expected)

    def test_default_output_is_a_frame_with_modality_names(self, expected, names):
        # a plain array in, modalities by position: the names still carry the modalities
        X, _ = load_breast_cancer()
        modalities = {"genes": slice(0, 76), "clinical": slice(76, 81)}
        Xt = ModalityPreprocessor(modalities, n_components=N_COMPONENTS).fit_transform(X.to_numpy())
        assert isinstance(Xt, pd.DataFrame)
        assert list(Xt.columns) == names[:N_COMPONENTS] + [f"clinical__{k}" for k in range(5)]
        pd.testing.assert_index_equal(Xt.index, pd.RangeIndex(len(X)))
        _assert_close(_to_numpy(Xt), expected)


class TestCoxBaseline:
    @pytest.mark.parametrize("output", ["pandas", "polars"])
    @pytest.mark.parametrize("l1_ratio", [None, 0.5])
    def test_global_output_gives_the_same_model(self, breast_cancer, by_hand, output, l1_ratio):
        X, y = breast_cancer
        _container(output)
        if l1_ratio is None:
            cox = CoxPHSurvivalAnalysis(alpha=100.0)
        else:
            cox = CoxnetSurvivalAnalysis(alphas=[0.03], l1_ratio=l1_ratio, fit_baseline_model=True)
        with sklearn.config_context(transform_output="default"):
            reference = make_pipeline(sklearn.clone(by_hand), cox).fit(X, y)
            expected = reference.predict(X)
        with sklearn.config_context(transform_output=output):
            model = make_cox_baseline(n_components=N_COMPONENTS, l1_ratio=l1_ratio).fit(X, y)
            risks = model.predict(X)
            score = model.score(X, y)
        _assert_close(risks, expected)
        np.testing.assert_allclose(score, reference.score(X, y), rtol=1e-12)

    @pytest.mark.parametrize("output", ["pandas", "polars"])
    def test_selector_then_baseline(self, output):
        _container(output)
        X, y = make_multimodal_survival(
            80, {"mri": 12, "path": 10, "clinical": 3}, dtype=np.float64, random_state=0
        )
        kept = [c for c in X.columns if not c.startswith("mri__")]
        with sklearn.config_context(transform_output="default"):
            expected = make_cox_baseline(random_state=0).fit(X[kept], y).predict(X[kept])
        with sklearn.config_context(transform_output=output):
            pipe = make_pipeline(ModalitySelector({"mri": None}), make_cox_baseline(random_state=0))
            risks = pipe.fit(X, y).predict(X)
        _assert_close(risks, expected)


class TestModalitySelector:
    @pytest.mark.parametrize("output", ["default", "pandas", "polars"])
    def test_reads_polars_frames(self, breast_cancer, columns, output):
        pl = pytest.importorskip("polars")
        X, _ = breast_cancer
        frame = pl.from_numpy(X.to_numpy(), schema=list(X.columns))
        # the default keeps the input's container
        container = pl.DataFrame if output == "default" else _container(output)
        with sklearn.config_context(transform_output=output):
            Xt = ModalitySelector({"genes": None}).fit_transform(frame)
        assert isinstance(Xt, container)
        assert list(Xt.columns) == columns["clinical"]
        _assert_close(_to_numpy(Xt), X[columns["clinical"]].to_numpy())


def _fusion_model():
    # the test is about the tokens the estimator sees, so a small, fast network
    return M4SurvivalEstimator(
        adapter="mlp",
        d_model=8,
        encoder_hidden=16,
        batch_size=None,
        max_epochs=2,
        random_state=0,
        device="cpu",
    )


class TestFusionPipeline:
    """The preprocessor hands the estimator its modalities: one token each."""

    @pytest.fixture(scope="class")
    def reference(self, breast_cancer, expected, names):
        # the same network fitted on scikit-learn's numbers, named by hand
        X, y = breast_cancer
        frame = pd.DataFrame(expected, index=X.index, columns=names)
        with sklearn.config_context(transform_output="default"):
            return _fusion_model().fit(frame, y).predict(frame)

    @pytest.mark.parametrize("output", ["default", "pandas", "polars"])
    def test_one_token_per_modality(self, breast_cancer, names, reference, output):
        X, y = breast_cancer
        _container(output)
        with sklearn.config_context(transform_output=output):
            pipe = make_pipeline(ModalityPreprocessor(n_components=N_COMPONENTS), _fusion_model())
            risks = pipe.fit(X, y).predict(X)
        estimator = pipe[-1]
        assert list(estimator.modalities_) == ["genes", "clinical"]
        np.testing.assert_array_equal(estimator.feature_names_in_, names)
        np.testing.assert_allclose(risks, reference, rtol=1e-5, atol=1e-6 * np.abs(reference).max())
