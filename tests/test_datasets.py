import doctest

import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import PCA
from sklearn.linear_model import LinearRegression
from sksurv.datasets import load_breast_cancer as load_sksurv_breast_cancer
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.metrics import concordance_index_censored

from sksurvfusion.datasets import _breast_cancer, _synthetic, load_breast_cancer
from sksurvfusion.datasets import make_multimodal_survival as make

SMALL = {"a": 16, "b": 12}


def fields(y):
    # event first, time second, whatever the field names
    event_field, time_field = y.dtype.names
    return y[event_field], y[time_field]


def c_index(y, risk):
    event, time = fields(y)
    return concordance_index_censored(event, time, risk)[0]


def modality_of(columns):
    return pd.Index(columns).str.split("__").str[0]


@pytest.mark.parametrize("module", [_breast_cancer, _synthetic])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


class TestLoadBreastCancer:
    @pytest.fixture(scope="class")
    def data(self):
        return load_breast_cancer()

    @pytest.fixture(scope="class")
    def original(self):
        return load_sksurv_breast_cancer()

    def test_shape_and_modalities(self, data):
        X, y = data
        assert X.shape == (198, 81)
        assert y.shape == (198,)
        modality = modality_of(X.columns)
        assert set(modality) == {"genes", "clinical"}
        assert (modality == "genes").sum() == 76
        assert X.columns[76:].tolist() == [
            "clinical__age",
            "clinical__er",
            "clinical__grade",
            "clinical__grade_unknown",
            "clinical__size",
        ]
        assert X.columns.is_unique

    def test_float64_without_nan(self, data):
        X, _ = data
        assert (X.dtypes == np.float64).all()
        assert not X.isna().any().any()

    def test_target_matches_scikit_survival(self, data, original):
        _, y = data
        _, y_original = original
        event, time = fields(y)
        event_original, time_original = fields(y_original)
        assert event.dtype == bool
        assert time.dtype == np.float64
        np.testing.assert_array_equal(event, event_original)
        np.testing.assert_array_equal(time, time_original)

    def test_genes_unchanged(self, data, original):
        X, _ = data
        X_original, _ = original
        genes = X.filter(regex="^genes__")
        expected = X_original[["X" + name.removeprefix("genes__") for name in genes.columns]]
        np.testing.assert_array_equal(genes.to_numpy(), expected.to_numpy())

    def test_clinical_encoding(self, data, original):
        X, _ = data
        X_original, _ = original
        np.testing.assert_array_equal(X["clinical__age"], X_original["age"])
        np.testing.assert_array_equal(X["clinical__size"], X_original["size"])
        np.testing.assert_array_equal(X["clinical__er"], X_original["er"] == "positive")

        grade = X_original["grade"].astype(str)
        unknown = grade == "unkown"
        assert unknown.sum() == 2
        np.testing.assert_array_equal(X["clinical__grade_unknown"], unknown)
        expected = grade.map(
            {"well differentiated": 1, "intermediate": 2, "poorly differentiated": 3, "unkown": 2}
        )
        np.testing.assert_array_equal(X["clinical__grade"], expected)


class TestMakeMultimodalSurvival:
    @pytest.fixture(scope="class")
    def seed(self):
        return 0

    @pytest.fixture(scope="class")
    def large(self, seed):
        # the same latents with and without the cross-modal term: the streams are
        # independent, so only the log-hazard (and hence y) changes
        X, y, risk = make(2000, SMALL, n_latent=3, return_risk=True, random_state=seed)
        _, _, main_only = make(
            2000, SMALL, n_latent=3, interaction=0.0, return_risk=True, random_state=seed
        )
        return X, y, risk, main_only

    def test_default_modalities(self, seed):
        X, y = make(50, random_state=seed)
        assert X.shape == (50, 4 * 1024 + 1536)
        assert (X.dtypes == np.float32).all()
        counts = modality_of(X.columns).value_counts()
        expected = {"t1": 1024, "t1pc": 1024, "t2": 1024, "flair": 1024, "pathology": 1536}
        assert counts.to_dict() == expected
        assert X.columns[0] == "t1__medimageinsight__0"
        assert X.columns[1023] == "t1__medimageinsight__1023"
        assert X.columns[1024] == "t1pc__medimageinsight__0"
        assert X.columns[-1] == "pathology__uni2h__1535"
        assert not X.isna().any().any()
        assert y.shape == (50,)

    def test_columns_and_model_names(self, seed):
        X, _ = make(10, SMALL, random_state=seed)
        assert X.columns.tolist() == [f"a__{k}" for k in range(16)] + [f"b__{k}" for k in range(12)]
        X, _ = make(10, SMALL, model_names={"b": "uni2h"}, random_state=seed)
        assert X.columns[0] == "a__0"
        assert X.columns[16] == "b__uni2h__0"
        X, _ = make(10, {"t1": 4, "pathology": 4}, model_names={"t1": None}, random_state=seed)
        assert X.columns.tolist()[::4] == ["t1__0", "pathology__uni2h__0"]

    def test_target(self, large):
        X, y, risk, _ = large
        event, time = fields(y)
        assert event.dtype == bool
        assert time.dtype == np.float64
        assert (time > 0).all()
        assert np.unique(time).shape == time.shape
        assert risk.shape == (X.shape[0],)
        assert risk.dtype == np.float64

    def test_embeddings_look_like_foundation_model_output(self, seed):
        X, _ = make(500, {"a": 64, "b": 96}, n_latent=4, noise=0.1, random_state=seed)
        for name in ("a", "b"):
            block = X.filter(regex=f"^{name}__").to_numpy(np.float64)
            np.testing.assert_allclose(np.linalg.norm(block, axis=1), 1.0, rtol=1e-5)
            explained = PCA(4).fit(block).explained_variance_ratio_.sum()
            assert explained > 0.9

    def test_reproducible(self, seed):
        X1, y1, risk1 = make(30, SMALL, return_risk=True, random_state=seed)
        X2, y2, risk2 = make(30, SMALL, return_risk=True, random_state=seed)
        pd.testing.assert_frame_equal(X1, X2)
        np.testing.assert_array_equal(y1, y2)
        np.testing.assert_array_equal(risk1, risk2)

        X3, y3 = make(30, SMALL, random_state=seed + 1)
        assert not np.allclose(X1.to_numpy(), X3.to_numpy())
        assert not np.array_equal(fields(y1)[1], fields(y3)[1])

    def test_seeds_share_the_feature_space(self):
        # the fixed offset of each modality dominates the column means, whatever the seed
        X1, _ = make(300, SMALL, random_state=1)
        X2, _ = make(300, SMALL, random_state=2)
        correlation = np.corrcoef(X1.mean().to_numpy(), X2.mean().to_numpy())[0, 1]
        assert correlation > 0.9

    def test_float64(self, seed):
        # noise is drawn in the output dtype, so compare without it
        X32, _ = make(20, SMALL, noise=0.0, random_state=seed)
        X64, _ = make(20, SMALL, noise=0.0, dtype=np.float64, random_state=seed)
        assert (X64.dtypes == np.float64).all()
        np.testing.assert_allclose(X32.to_numpy(), X64.to_numpy(), atol=1e-5)

    @pytest.mark.parametrize("censoring_rate", [0.0, 0.3, 0.75])
    def test_censoring_rate(self, seed, censoring_rate):
        _, y = make(1000, SMALL, censoring_rate=censoring_rate, random_state=seed)
        event, _ = fields(y)
        assert abs((1 - event.mean()) - censoring_rate) < 0.01

    def test_missing_whole_modalities(self, seed):
        modalities = {"a": 6, "b": 5, "c": 4}
        rate = 0.4
        X, _ = make(4000, modalities, missing_rate=rate, random_state=seed)
        missing = pd.DataFrame(
            {name: X.filter(regex=f"^{name}__").isna().all(axis=1) for name in modalities}
        )
        partial = pd.DataFrame(
            {name: X.filter(regex=f"^{name}__").isna().any(axis=1) for name in modalities}
        )
        pd.testing.assert_frame_equal(missing, partial)
        assert not missing.all(axis=1).any()
        # a patient drawn without any modality keeps one of the three
        expected = rate - rate**3 / 3
        np.testing.assert_allclose(missing.mean(), expected, atol=0.03)

    def test_missing_rate_per_modality(self, seed):
        X, _ = make(2000, SMALL, missing_rate={"b": 0.5}, random_state=seed)
        assert not X.filter(regex="^a__").isna().any().any()
        assert abs(X.filter(regex="^b__").isna().all(axis=1).mean() - 0.5) < 0.05

    def test_missing_keeps_everything_else(self, seed):
        X, y = make(200, SMALL, random_state=seed)
        X_missing, y_missing = make(200, SMALL, missing_rate=0.3, random_state=seed)
        np.testing.assert_array_equal(y, y_missing)
        present = X_missing.notna().to_numpy()
        assert 0 < present.mean() < 1
        np.testing.assert_array_equal(X.to_numpy()[present], X_missing.to_numpy()[present])

    def test_cross_modal_interaction_drives_the_hazard(self, large):
        _, y, risk, main_only = large
        full = c_index(y, risk)
        assert full > 0.75
        assert c_index(y, main_only) < full - 0.1

    def test_fusion_beats_single_modality(self, large):
        # a Cox model on per-modality principal components (as many as latent factors) and
        # their products learns the interaction from the embeddings; one modality cannot
        X_train, y_train, _, _ = large
        X_test, y_test = make(2000, SMALL, n_latent=3, random_state=123)

        def scores(names):
            pcas = {
                name: PCA(3).fit(X_train.filter(regex=f"^{name}__").to_numpy(np.float64))
                for name in names
            }

            def features(X):
                blocks = [
                    pcas[name].transform(X.filter(regex=f"^{name}__").to_numpy(np.float64))
                    / np.sqrt(pcas[name].explained_variance_)
                    for name in names
                ]
                if len(blocks) == 2:
                    blocks.append(np.einsum("ni,nj->nij", *blocks).reshape(len(X), -1))
                return np.hstack(blocks)

            model = CoxPHSurvivalAnalysis(alpha=1e-3).fit(features(X_train), y_train)
            return model.score(features(X_test), y_test)

        fused = scores(["a", "b"])
        assert fused > 0.7
        assert fused > max(scores(["a"]), scores(["b"])) + 0.08

    @pytest.mark.parametrize(
        ("groups", "t2_from_t1"), [({"mri": ["t1", "t2"]}, True), (None, False)]
    )
    def test_groups_share_a_latent(self, seed, groups, t2_from_t1):
        X, _ = make(
            400,
            {"t1": 8, "t2": 8, "pathology": 8},
            groups=groups,
            n_latent=2,
            noise=0.0,
            interaction=0.0,
            random_state=seed,
        )

        def r2(source, target):
            source, target = X.filter(regex=f"^{source}__"), X.filter(regex=f"^{target}__")
            return LinearRegression().fit(source, target).score(source, target)

        assert (r2("t1", "t2") > 0.9) is t2_from_t1
        assert r2("t1", "pathology") < 0.1

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"n_samples": 0}, "n_samples"),
            ({"n_samples": 2.5}, "n_samples"),
            ({"n_samples": True}, "n_samples"),
            ({"modalities": {}}, "modalities"),
            ({"modalities": {"a__b": 4, "c": 4}}, "modalities"),
            ({"modalities": {"a": 0, "b": 4}}, r"modalities\['a'\]"),
            ({"modalities": {"a": 4}}, "interaction"),
            ({"missing_rate": 1.0}, "missing_rate"),
            ({"missing_rate": -0.1}, "missing_rate"),
            ({"missing_rate": {"zzz": 0.1}}, "missing_rate.*zzz"),
            ({"missing_rate": {"t1": 1.5}}, r"missing_rate\['t1'\]"),
            ({"censoring_rate": 1.0}, "censoring_rate"),
            ({"n_latent": 1}, "n_latent"),
            ({"noise": -1.0}, "noise"),
            ({"interaction": np.nan}, "interaction"),
            ({"weibull_shape": 0.0}, "weibull_shape"),
            ({"model_names": {"mri": "x"}}, "model_names.*mri"),
            ({"model_names": {"t1": "a__b"}}, "model_names"),
            ({"groups": {"g": ["t1", "mri"]}}, "groups.*mri"),
            ({"groups": {"g": ["t1"], "h": ["t1"]}}, "groups.*'t1'"),
            ({"groups": {"g": "t1"}}, "groups"),
            ({"dtype": np.int64}, "dtype"),
            ({"dtype": "not a dtype"}, "dtype"),
            ({"dtype": None}, "dtype"),
        ],
    )
    def test_invalid_parameters(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            make(**{"n_samples": 5, **kwargs})
