import doctest
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks
from sksurv.functions import StepFunction
from sksurv.linear_model import CoxnetSurvivalAnalysis, CoxPHSurvivalAnalysis

from sksurvfusion import M4SurvivalEstimator, baselines
from sksurvfusion.baselines import ModalityPreprocessor, make_cox_baseline
from sksurvfusion.datasets import load_breast_cancer, make_multimodal_survival
from sksurvfusion.modality import modality_mask
from sksurvfusion.model_selection import SurvivalStratifiedKFold


@pytest.fixture(scope="module")
def breast_cancer():
    return load_breast_cancer()


@pytest.fixture(scope="module")
def with_missing():
    # modality "a" (12 wide, reduced by PCA) missing for about a third of the patients
    return make_multimodal_survival(
        90, {"a": 12, "b": 3}, missing_rate={"a": 0.3}, dtype=np.float64, random_state=0
    )


@parametrize_with_checks(
    [
        ModalityPreprocessor(n_components=2),
        ModalityPreprocessor(n_components=2, impute_partial="mean"),
    ]
)
def test_scikit_learn_conventions(estimator, check):
    check(estimator)


def test_docstring_examples():
    result = doctest.testmod(baselines, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


class TestMakeCoxBaseline:
    @pytest.mark.parametrize("whiten", [True, False])
    def test_matches_hand_built_pipeline(self, breast_cancer, whiten):
        X, y = breast_cancer
        genes = [c for c in X.columns if c.startswith("genes__")]
        clinical = [c for c in X.columns if c.startswith("clinical__")]
        by_hand = make_pipeline(
            ColumnTransformer(
                [
                    (
                        "genes",
                        make_pipeline(StandardScaler(), PCA(n_components=6, whiten=whiten)),
                        genes,
                    ),
                    ("clinical", StandardScaler(), clinical),
                ]
            ),
            CoxPHSurvivalAnalysis(alpha=3.0),
        ).fit(X, y)
        model = make_cox_baseline(n_components=6, alpha=3.0)
        model = model.set_params(preprocess__whiten=whiten).fit(X, y)
        np.testing.assert_allclose(model.predict(X), by_hand.predict(X), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(model.named_steps["cox"].coef_, by_hand[-1].coef_, rtol=1e-6)

    def test_plain_array_with_positions_matches_frame(self, breast_cancer):
        X, y = breast_cancer
        positions = {"genes": list(range(76)), "clinical": slice(76, 81)}
        from_array = make_cox_baseline(positions).fit(X.to_numpy(), y)
        from_frame = make_cox_baseline().fit(X, y)
        np.testing.assert_allclose(
            from_array.predict(X.to_numpy()), from_frame.predict(X), rtol=1e-8
        )

    def test_defaults(self):
        model = make_cox_baseline()
        assert [name for name, _ in model.steps] == ["preprocess", "cox"]
        assert model.named_steps["preprocess"].n_components == 8
        assert isinstance(model.named_steps["cox"], CoxPHSurvivalAnalysis)
        assert model.named_steps["cox"].alpha == 100.0

    def test_missing_modality_is_imputed_with_one_indicator(self, with_missing):
        X, y = with_missing
        missing = X.filter(like="a__").isna().all(axis=1).to_numpy()
        assert 0 < missing.sum() < len(X)
        model = make_cox_baseline(n_components=4).fit(X, y)
        prep = model.named_steps["preprocess"]
        names = prep.get_feature_names_out().tolist()
        assert names == ["a__pc0", "a__pc1", "a__pc2", "a__pc3", "a__missing"] + [
            f"b__{k}" for k in range(3)
        ]
        Xt = pd.DataFrame(prep.transform(X), columns=names)
        np.testing.assert_array_equal(Xt["a__missing"], missing.astype(float))
        # every missing row gets the same imputed point: the training mean, scaled to 0
        assert np.ptp(Xt.loc[missing, "a__pc0"]) == 0
        assert np.isfinite(model.predict(X)).all()
        assert 0.5 < model.score(X, y) <= 1

    def test_modality_missing_only_at_predict_time(self, with_missing):
        X, y = with_missing
        model = make_cox_baseline(n_components=4).fit(X, y)
        X_test = X.copy()
        X_test.loc[:9, [c for c in X.columns if c.startswith("b__")]] = np.nan
        X_test.loc[:9, [c for c in X.columns if c.startswith("a__")]] = 0.1
        with pytest.warns(UserWarning, match="'b' is missing in rows"):
            assert np.isfinite(model.predict(X_test)).all()

    def test_partially_missing_modality_raises(self, with_missing):
        X, y = with_missing
        X = X.copy()
        X.iloc[~X["a__0"].isna().to_numpy(), 0] = np.nan
        with pytest.raises(ValueError, match="modality 'a' has NaN in only some"):
            make_cox_baseline().fit(X, y)

    def test_modality_missing_in_every_row_raises(self, with_missing):
        X, y = with_missing
        X = X.copy()
        X[[c for c in X.columns if c.startswith("a__")]] = np.nan
        with pytest.raises(ValueError, match="'a' is missing in every training row"):
            make_cox_baseline().fit(X, y)

    def test_l1_ratio_gives_coxnet_with_survival_functions(self, breast_cancer):
        X, y = breast_cancer
        model = make_cox_baseline(l1_ratio=0.5).fit(X, y)
        cox = model.named_steps["cox"]
        assert isinstance(cox, CoxnetSurvivalAnalysis)
        assert cox.l1_ratio == 0.5
        np.testing.assert_allclose(cox.alphas_, [0.03])
        functions = model.predict_survival_function(X.iloc[:4])
        assert len(functions) == 4
        assert all(isinstance(f, StepFunction) for f in functions)
        values = np.vstack([f(f.x) for f in functions])
        assert ((values >= 0) & (values <= 1)).all()
        assert (np.diff(values, axis=1) <= 1e-12).all()
        assert model.score(X, y) > 0.6

    def test_grid_search_with_survival_folds(self, breast_cancer):
        X, y = breast_cancer
        search = GridSearchCV(
            make_cox_baseline(),
            {"cox__alpha": [1.0, 100.0], "preprocess__n_components": [2, 4]},
            cv=SurvivalStratifiedKFold(3),
        ).fit(X, y)
        assert len(search.cv_results_["params"]) == 4
        assert 0.5 < search.best_score_ < 1
        assert search.best_estimator_.named_steps["preprocess"].n_components in (2, 4)

    def test_clone_keeps_parameters(self):
        model = make_cox_baseline({"x": [0, 1]}, n_components=3, alpha=2.0)
        copy = clone(model)
        assert copy.get_params()["preprocess__modalities"] == {"x": [0, 1]}
        assert copy.get_params()["preprocess__n_components"] == 3
        assert copy.get_params()["cox__alpha"] == 2.0

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [({"l1_ratio": 0.0}, "l1_ratio"), ({"l1_ratio": 2}, "l1_ratio"), ({"alpha": -1}, "alpha")],
    )
    def test_invalid_arguments(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            make_cox_baseline(**kwargs)


class TestModalityPreprocessor:
    def test_a_modality_missing_only_at_predict_time_is_named_in_a_warning(self):
        X, _ = make_multimodal_survival(
            60, modalities={"mri": 4, "pathology": 3}, n_latent=2, random_state=0
        )
        X.index = [f"P{i:02d}" for i in range(len(X))]
        prep = ModalityPreprocessor(missing="impute").fit(X)
        test = X.copy()
        test.loc[["P03", "P07"], test.columns.str.startswith("pathology__")] = np.nan
        with pytest.warns(UserWarning, match=r"'pathology' is missing in rows \[P03, P07\]"):
            Xt = prep.transform(test)
        # still imputed as documented: the training mean, zero after scaling
        np.testing.assert_array_equal(Xt.filter(like="pathology__").loc[["P03", "P07"]], 0.0)
        # a modality seen missing in training has its indicator, and no warning
        train = X.copy()
        train.loc[["P01"], train.columns.str.startswith("pathology__")] = np.nan
        prep = ModalityPreprocessor(missing="impute").fit(train)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            Xt = prep.transform(test)
        assert Xt.loc[["P03", "P07"], "pathology__missing"].tolist() == [1.0, 1.0]

    def test_components_capped_below_training_rows(self):
        # centred data of 6 rows span 5 directions; a sixth whitened component would be
        # noise scaled up by about 1e6
        X, _ = make_multimodal_survival(6, {"a": 20, "b": 2}, random_state=0)
        X_new, _ = make_multimodal_survival(50, {"a": 20, "b": 2}, random_state=1)
        prep = ModalityPreprocessor(n_components=10).fit(X)
        assert prep.transform(X).shape == (6, 5 + 2)
        pca = prep.transformer_.named_transformers_["a"].named_steps["pca"]
        assert pca.explained_variance_ratio_.min() > 1e-3
        assert np.abs(prep.transform(X_new).to_numpy()).max() < 100

    def test_plain_array_is_one_modality(self):
        X = np.random.default_rng(0).normal(size=(30, 12))
        prep = ModalityPreprocessor(n_components=3).fit(X)
        assert list(prep.modalities_) == ["features"]
        assert prep.get_feature_names_out().tolist() == [f"features__pc{k}" for k in range(3)]

    def test_whitened_components_have_unit_variance(self, breast_cancer):
        X, _ = breast_cancer
        Xt = ModalityPreprocessor(n_components=5).fit_transform(X).to_numpy()
        np.testing.assert_allclose(Xt.std(axis=0, ddof=1)[:5], 1.0, rtol=1e-6)
        raw = ModalityPreprocessor(n_components=5, whiten=False).fit_transform(X).to_numpy()
        assert raw.std(axis=0)[0] > 3.0  # 76 standardised genes: the first PC is wide

    def test_random_state_fixes_the_randomized_pca(self):
        # 600 columns: scikit-learn's PCA picks its randomized solver for this modality
        X = np.random.default_rng(0).normal(size=(60, 600))
        first, second = (
            ModalityPreprocessor(n_components=4, random_state=0).fit_transform(X) for _ in range(2)
        )
        np.testing.assert_array_equal(first, second)
        # the seed is what makes them equal: another seed gives other components
        other = ModalityPreprocessor(n_components=4, random_state=1).fit_transform(X)
        assert not np.array_equal(first, other)
        assert make_cox_baseline(random_state=3).get_params()["preprocess__random_state"] == 3

    def test_narrow_modality_is_only_standardised(self, breast_cancer):
        X, _ = breast_cancer
        prep = ModalityPreprocessor(n_components=5).fit(X)  # clinical has 5 columns
        Xt = prep.transform(X)
        names = prep.get_feature_names_out().tolist()
        clinical = [n for n in names if n.startswith("clinical__")]
        assert clinical == [c for c in X.columns if c.startswith("clinical__")]
        expected = StandardScaler().fit_transform(X[clinical])
        np.testing.assert_allclose(Xt[clinical].to_numpy(), expected)

    def test_pandas_output(self, breast_cancer):
        X, _ = breast_cancer
        Xt = ModalityPreprocessor(n_components=2).set_output(transform="pandas").fit_transform(X)
        assert isinstance(Xt, pd.DataFrame)
        assert Xt.columns[:2].tolist() == ["genes__pc0", "genes__pc1"]

    def test_missing_modality_stays_nan_for_the_network(self, with_missing):
        X, y = with_missing
        absent = X.filter(like="a__").isna().all(axis=1).to_numpy()
        prep = ModalityPreprocessor(n_components=4).fit(X)
        Xt = prep.transform(X)
        assert "a__missing" not in Xt.columns
        assert Xt.filter(like="a__").isna().all(axis=1).to_numpy().tolist() == absent.tolist()
        # the present rows are those of the imputing variant, which fits on the same rows
        imputed = ModalityPreprocessor(n_components=4, missing="impute").fit_transform(X)
        np.testing.assert_allclose(
            Xt[~absent].to_numpy(), imputed.drop(columns="a__missing")[~absent].to_numpy()
        )
        # so the fusion network after it masks the modality's token
        model = make_pipeline(
            ModalityPreprocessor(n_components=4),
            M4SurvivalEstimator(d_model=8, max_epochs=1, random_state=0),
        ).fit(X, y)
        mask = modality_mask(model[0].transform(X).to_numpy(np.float32), model[-1].modalities_)
        assert (~mask[:, 0]).tolist() == absent.tolist()

    def test_wrong_number_of_columns_at_transform(self, breast_cancer):
        X, _ = breast_cancer
        prep = ModalityPreprocessor().fit(X.to_numpy())
        with pytest.raises(ValueError, match="features"):
            prep.transform(X.to_numpy()[:, :10])

    def test_invalid_n_components(self, breast_cancer):
        X, _ = breast_cancer
        with pytest.raises(ValueError, match="n_components"):
            ModalityPreprocessor(n_components=0).fit(X)


@pytest.fixture(scope="module")
def with_gaps(breast_cancer):
    """Breast cancer with partial clinical gaps and a few patients without clinical data."""
    X, y = breast_cancer
    X = X.set_axis([f"P{i:03d}" for i in range(len(X))], axis=0)
    clinical = [c for c in X.columns if c.startswith("clinical__")]
    block = X[clinical].to_numpy(copy=True)
    rng = np.random.default_rng(0)
    block[rng.random(block.shape) < 0.1] = np.nan
    block[[5, 50, 150]] = np.nan  # the modality missing altogether
    X = X.copy()
    X[clinical] = block
    return X, y, clinical


class TestPartialGaps:
    def test_error_names_modality_rows_and_parameter(self, with_gaps):
        X, y, clinical = with_gaps
        partial = X[clinical].isna().any(axis=1) & X[clinical].notna().any(axis=1)
        first = X.index[partial][:5].tolist()
        message = (
            rf"modality 'clinical' has NaN in only some of its columns in rows "
            rf"\[{', '.join(first)}\] and {partial.sum() - 5} more; pass impute_partial='mean'"
        )
        with pytest.raises(ValueError, match=message):
            ModalityPreprocessor().fit(X)
        with pytest.raises(ValueError, match=message):
            make_cox_baseline().fit(X, y)
        # a gap that appears only at transform time is named the same way
        complete = X[X[clinical].notna().all(axis=1)]
        prep = ModalityPreprocessor().fit(complete)
        gap = X.loc[["P003"]].assign(clinical__age=np.nan, clinical__er=1.0)
        with pytest.raises(ValueError, match=r"'clinical' .* in rows \[P003\]; .*impute_partial"):
            prep.transform(gap)

    @pytest.mark.parametrize("strategy", ["mean", "median", "most_frequent"])
    def test_matches_simple_imputer_then_scaler(self, with_gaps, strategy):
        X, _, clinical = with_gaps
        train, test = X.iloc[:150], X.iloc[150:]
        prep = ModalityPreprocessor(n_components=5, missing="impute", impute_partial=strategy).fit(
            train
        )
        absent = train[clinical].isna().all(axis=1).to_numpy()
        # the oracle: scikit-learn's imputer and scaler on the rows that have the modality
        imputer = SimpleImputer(strategy=strategy).fit(train.loc[~absent, clinical])
        scaler = StandardScaler().fit(imputer.transform(train.loc[~absent, clinical]))
        for frame in (train, test):
            Xt = prep.transform(frame)
            missing = frame[clinical].isna().all(axis=1).to_numpy()
            assert missing.any()
            expected = scaler.transform(imputer.transform(frame.loc[~missing, clinical]))
            np.testing.assert_allclose(
                Xt.loc[~missing, clinical].to_numpy(), expected, rtol=1e-10, atol=1e-12
            )
            # a patient without clinical data keeps the training mean and the indicator
            np.testing.assert_array_equal(Xt.loc[missing, clinical].to_numpy(), 0.0)
            np.testing.assert_array_equal(Xt["clinical__missing"], missing.astype(float))

    def test_make_cox_baseline_passes_it_on(self, with_gaps):
        X, y, clinical = with_gaps
        keep = X[clinical].notna().any(axis=1).to_numpy()  # no missing modality here
        X, y = X[keep], y[keep]
        genes = [c for c in X.columns if c.startswith("genes__")]
        by_hand = make_pipeline(
            ColumnTransformer(
                [
                    (
                        "genes",
                        make_pipeline(StandardScaler(), PCA(n_components=8, whiten=True)),
                        genes,
                    ),
                    ("clinical", make_pipeline(SimpleImputer(), StandardScaler()), clinical),
                ]
            ),
            CoxPHSurvivalAnalysis(alpha=100.0),
        ).fit(X, y)
        model = make_cox_baseline(impute_partial="mean").fit(X, y)
        assert model.named_steps["preprocess"].impute_partial == "mean"
        expected = by_hand.predict(X)
        np.testing.assert_allclose(
            model.predict(X), expected, rtol=1e-6, atol=1e-9 * np.abs(expected).max()
        )

    def test_row_without_any_modality_is_named_by_label(self, with_gaps):
        X = with_gaps[0].copy()
        X.loc["P004"] = np.nan
        with pytest.raises(ValueError, match=r"rows \[P004\] have every modality missing"):
            ModalityPreprocessor(impute_partial="mean").fit(X)

    def test_column_never_observed_raises(self, with_gaps):
        X = with_gaps[0].assign(clinical__size=np.nan)
        with pytest.raises(
            ValueError, match=r"\['clinical__size'\] of modality 'clinical' are NaN"
        ):
            ModalityPreprocessor(impute_partial="mean").fit(X)

    def test_invalid_value_names_the_parameter(self, with_gaps):
        X, _, _ = with_gaps
        with pytest.raises(ValueError, match="'impute_partial' parameter"):
            ModalityPreprocessor(impute_partial="zero").fit(X)
