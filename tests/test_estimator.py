import copy
import pickle
import threading
from concurrent.futures import ThreadPoolExecutor

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks
from sksurv.linear_model.coxph import BreslowEstimator
from sksurv.metrics import (
    as_concordance_index_ipcw_scorer,
    as_integrated_brier_score_scorer,
    concordance_index_censored,
)
from sksurv.util import Surv

from sksurvfusion import M4SurvivalEstimator, ModalitySelector
from sksurvfusion.datasets import make_multimodal_survival
from sksurvfusion.modality import modality_mask

from _numerics import assert_close_to_scale

TINY = {
    "d_model": 8,
    "encoder_hidden": 16,
    "n_layers": 1,
    "d_state": 4,
    "n_heads": 2,
    "max_epochs": 3,
    "batch_size": 32,
    "random_state": 0,
}
WIDTHS = {"t1": 12, "t2": 12, "pathology": 16}
# every source of randomness of a fit: dropout, modality dropout, the validation split
RANDOM_TRAINING = {
    "dropout": 0.3,
    "modality_dropout": 0.3,
    "early_stopping": True,
    "validation_fraction": 0.25,
    "patience": 2,
}


def fields(y):
    event, time = y.dtype.names
    return y[event], y[time]


@pytest.fixture(scope="module")
def data():
    X, y = make_multimodal_survival(160, modalities=WIDTHS, random_state=0)
    return X, y


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    return M4SurvivalEstimator(**TINY).fit(X, y)


def _as_survival(y):
    """scikit-learn's generic test targets as survival targets: every sample an event."""
    if y is None or (getattr(y, "dtype", None) is not None and y.dtype.fields is not None):
        return y
    magnitude = np.abs(np.asarray(y)).astype(float)
    return Surv.from_arrays(np.ones(len(magnitude), dtype=bool), magnitude + 1.0)


class _GenericTarget(M4SurvivalEstimator):
    """Maps scikit-learn's generic test targets to survival targets."""

    def fit(self, X, y):
        return super().fit(X, _as_survival(y))

    def score(self, X, y):
        return super().score(X, _as_survival(y))


CHECK_PARAMS = TINY | {"max_epochs": 2, "batch_size": None}


@parametrize_with_checks(
    [_GenericTarget(**CHECK_PARAMS)],
    expected_failed_checks=lambda estimator: {
        "check_methods_subset_invariance": (
            "float32 inference: predicting a subset runs BLAS kernels blocked for another "
            "batch size, so results differ in the 7th significant digit"
        ),
    },
)
def test_scikit_learn_conventions(estimator, check):
    check(estimator)


class TestFitPredict:
    def test_shapes_and_fitted_attributes(self, fitted, data):
        X, _ = data
        assert fitted.predict(X).shape == (len(X),)
        assert fitted.transform(X).shape == (len(X), TINY["d_model"])
        assert list(fitted.modalities_) == list(WIDTHS)
        np.testing.assert_array_equal(fitted.feature_names_in_, X.columns)
        assert fitted.n_features_in_ == X.shape[1]
        assert np.all(np.abs(fitted.predict(X)) <= 3.0)

    def test_score_is_harrells_c(self, fitted, data):
        X, y = data
        event, time = fields(y)
        expected = concordance_index_censored(event, time, fitted.predict(X))[0]
        assert fitted.score(X, y) == pytest.approx(expected)

    def test_survival_functions_equal_breslow_on_training_risks(self, fitted, data):
        X, y = data
        event, time = fields(y)
        breslow = BreslowEstimator().fit(fitted.predict(X), event, time)
        X_new = X.iloc[:7]
        risk_new = fitted.predict(X_new)
        expected = np.vstack(
            [fn(breslow.unique_times_) for fn in breslow.get_survival_function(risk_new)]
        )
        surv = fitted.predict_survival_function(X_new, return_array=True)
        np.testing.assert_allclose(surv, expected, rtol=1e-10)
        cumhaz = fitted.predict_cumulative_hazard_function(X_new)
        np.testing.assert_allclose(
            cumhaz[0](fitted.unique_times_),
            breslow.cum_baseline_hazard_.y * np.exp(risk_new[0]),
            rtol=1e-10,
        )
        np.testing.assert_array_equal(fitted.unique_times_, breslow.unique_times_)

    def test_risk_groups_cut_training_risks_at_33_and_66(self, fitted, data):
        X, _ = data
        risk = fitted.predict(X)
        np.testing.assert_allclose(fitted.risk_cutpoints_, np.percentile(risk, [33, 66]))
        groups = fitted.predict_risk_group(X)
        assert set(groups) == {0, 1, 2}
        assert risk[groups == 0].max() < risk[groups == 2].min()
        np.testing.assert_allclose(np.bincount(groups) / len(X), [0.33, 0.33, 0.34], atol=0.02)

    def test_learns_the_cross_modal_hazard(self):
        shape = {"modalities": {"mri": 32, "pathology": 32}, "n_latent": 4, "noise": 0.5}
        X, y = make_multimodal_survival(400, random_state=1, **shape)
        X_test, y_test = make_multimodal_survival(400, random_state=2, **shape)
        model = M4SurvivalEstimator(
            d_model=16,
            encoder_hidden=256,
            dropout=0.1,
            weight_decay=0.01,
            max_epochs=15,
            batch_size=32,
            lr=1e-3,
            random_state=0,
        ).fit(X, y)
        fused = model.score(X_test, y_test)
        mri_only = M4SurvivalEstimator(**model.get_params() | {"modalities": {"mri": "^mri__"}})
        with pytest.warns(UserWarning, match="in no modality"):
            mri_only.fit(X, y)
        assert fused > 0.65
        assert fused > mri_only.score(X_test, y_test) + 0.05

    @pytest.mark.parametrize("adapter", ["mamba", "transformer", "mlp"])
    def test_every_adapter_fits_whole_batch(self, adapter, data):
        X, y = data
        model = M4SurvivalEstimator(adapter=adapter, **TINY | {"batch_size": None}).fit(X, y)
        assert np.isfinite(model.predict(X)).all()

    def test_reversed_views(self, fitted, data):
        # a reversed float32 view has negative strides, which torch.from_numpy refuses
        X, y = data
        values = X.to_numpy()
        np.testing.assert_array_equal(
            fitted.predict(pd.DataFrame(values[::-1], columns=X.columns)),
            fitted.predict(X)[::-1],
        )
        reversed_fit = M4SurvivalEstimator(**TINY).fit(X.iloc[::-1], y[::-1])
        assert np.isfinite(reversed_fit.predict(X)).all()

    def test_plain_array_input_is_one_modality(self, data):
        X, y = data
        model = M4SurvivalEstimator(**TINY).fit(X.to_numpy(), y)
        assert list(model.modalities_) == ["features"]
        assert not hasattr(model, "feature_names_in_")

    def test_encoder_groups_share_one_encoder(self, data):
        X, y = data
        shared = M4SurvivalEstimator(encoder_groups={"mri": ["t1", "t2"]}, **TINY).fit(X, y)
        separate = M4SurvivalEstimator(**TINY).fit(X, y)

        def n_params(model):
            return sum(p.numel() for p in model.net_.module_.parameters())

        encoder = 12 * 16 + 16 + 16 * 8 + 8 + 2 * 8  # Linear, Linear, LayerNorm
        assert n_params(separate) - n_params(shared) == encoder


class TestReproducibleAndSafe:
    def test_same_seed_same_model(self, data):
        X, y = data
        first = M4SurvivalEstimator(**TINY).fit(X, y).predict(X)
        second = M4SurvivalEstimator(**TINY).fit(X, y).predict(X)
        other = M4SurvivalEstimator(**TINY | {"random_state": 1}).fit(X, y).predict(X)
        np.testing.assert_array_equal(first, second)
        assert not np.allclose(first, other)

    @pytest.mark.parametrize("adapter", ["mamba", "transformer", "mlp"])
    def test_fit_leaves_global_rngs_alone(self, data, adapter):
        X, y = data
        torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()  # noqa: NPY002
        M4SurvivalEstimator(**TINY | RANDOM_TRAINING | {"adapter": adapter}).fit(X, y)
        assert torch.equal(torch.get_rng_state(), torch_state)
        after = np.random.get_state()  # noqa: NPY002
        assert after[0] == numpy_state[0]
        np.testing.assert_array_equal(after[1], numpy_state[1])
        assert after[2:] == numpy_state[2:]

    @pytest.mark.parametrize("adapter", ["mamba", "transformer", "mlp"])
    def test_fits_in_concurrent_threads_equal_fits_one_after_the_other(self, data, adapter):
        X, y = data
        params = TINY | RANDOM_TRAINING | {"adapter": adapter}
        seeds = (0, 1)
        alone = [
            M4SurvivalEstimator(**params | {"random_state": s}).fit(X, y).predict(X) for s in seeds
        ]
        start = threading.Barrier(len(seeds) + 1)
        done = threading.Event()

        def fit(seed):
            start.wait()
            return M4SurvivalEstimator(**params | {"random_state": seed}).fit(X, y).predict(X)

        def draw_from_the_global_generator():
            # a neighbour thread that uses torch's global generator all along
            start.wait()
            while not done.is_set():
                torch.rand(8)

        neighbour = threading.Thread(target=draw_from_the_global_generator)
        neighbour.start()
        try:
            with ThreadPoolExecutor(len(seeds)) as pool:
                together = list(pool.map(fit, seeds))
        finally:
            done.set()
            neighbour.join()
        for seed, expected, got in zip(seeds, alone, together, strict=True):
            np.testing.assert_array_equal(got, expected, err_msg=f"random_state={seed}")
        assert not np.array_equal(alone[0], alone[1])

    def test_grid_search_in_threads_is_reproducible(self, data):
        X, y = data
        search = GridSearchCV(
            M4SurvivalEstimator(**TINY | RANDOM_TRAINING),
            {"adapter": ["mamba", "mlp"]},
            cv=KFold(2, shuffle=True, random_state=0),
            n_jobs=2,
        )
        scores = []
        for _ in range(2):
            with joblib.parallel_backend("threading"):
                search.fit(X, y)
            scores.append(search.cv_results_["split0_test_score"])
        with joblib.parallel_backend("sequential"):
            search.fit(X, y)
        np.testing.assert_array_equal(scores[0], scores[1])
        np.testing.assert_array_equal(scores[0], search.cv_results_["split0_test_score"])

    def test_failed_fit_keeps_previous_model(self, data):
        X, y = data
        model = M4SurvivalEstimator(**TINY).fit(X, y)
        before, net = model.predict(X), model.net_
        bad = X.copy()
        bad.iloc[3, 0] = np.nan
        with pytest.raises(ValueError, match="modality 't1' has NaN in only some"):
            model.fit(bad, y)
        with pytest.raises(ValueError, match="n_heads"):
            model.set_params(adapter="transformer", n_heads=3).fit(X, y)
        assert model.net_ is net
        np.testing.assert_array_equal(model.set_params(adapter="mamba").predict(X), before)

    def test_pickle_and_joblib_round_trip(self, fitted, data, tmp_path):
        X, _ = data
        restored = pickle.loads(pickle.dumps(fitted))
        np.testing.assert_array_equal(restored.predict(X), fitted.predict(X))
        joblib.dump(fitted, tmp_path / "model.joblib")
        np.testing.assert_array_equal(
            joblib.load(tmp_path / "model.joblib").predict(X), fitted.predict(X)
        )


class TestMissingModalities:
    def test_train_with_missing_pathology_predict_with_any_subset(self):
        X, y = make_multimodal_survival(
            200, modalities=WIDTHS, missing_rate={"pathology": 0.3}, random_state=3
        )
        assert X.filter(like="pathology__").isna().all(axis=1).mean() > 0.2
        model = M4SurvivalEstimator(**TINY).fit(X, y)
        X_new = X.iloc[:10].copy()
        for missing in (["t1"], ["t2", "pathology"], ["t1", "pathology"]):
            subset = X_new.copy()
            for name in missing:
                subset.loc[:, subset.columns.str.startswith(f"{name}__")] = np.nan
            risk = model.predict(subset)
            assert np.isfinite(risk).all()

    def test_missing_values_never_reach_the_prediction(self, fitted, data):
        X, _ = data
        X_nan = X.iloc[:5].copy()
        X_nan.loc[:, X_nan.columns.str.startswith("t2__")] = np.nan
        expected = fitted.predict(X_nan)
        # the same rows predicted among others with t2 present: batch composition is irrelevant
        mixed = pd.concat([X_nan, X.iloc[5:20]])
        # float32 kernels blocked for another batch size: rounding differences only
        assert_close_to_scale(fitted.predict(mixed)[:5], expected, rel=2e-5)
        assert not np.allclose(expected, fitted.predict(X.iloc[:5]))


class TestMessagesThatNameTheProblem:
    """Ordinary first attempts get a message that says what is wrong and what to do."""

    def test_nan_errors_name_index_labels(self, data):
        X, y = data
        X = X.set_axis([f"P{i:03d}" for i in range(len(X))])
        X.iloc[7, 0] = np.nan
        with pytest.raises(ValueError, match=r"'t1' has NaN in only some .* rows \[P007\]"):
            M4SurvivalEstimator(**TINY).fit(X, y)

    def test_nan_at_predict_names_index_labels(self, fitted, data):
        X, _ = data
        X = X.iloc[:20].set_axis([f"P{i:03d}" for i in range(20)])
        X.iloc[[3, 11], 30] = np.nan
        with pytest.raises(ValueError, match=r"'pathology' .* rows \[P003, P011\].*impute_partial"):
            fitted.predict(X)

    def test_score_with_a_dataframe_target(self, fitted, data):
        X, y = data
        event, time = fields(y)
        frame = pd.DataFrame({"event": event, "time": time})
        with pytest.raises(ValueError, match=r"y must be a structured array.*Surv.from_dataframe"):
            fitted.score(X, frame)

    def test_time_before_event(self, data):
        X, y = data
        event, time = fields(y)
        swapped = np.rec.fromarrays([time, event], names="time,event").view(np.ndarray)
        with pytest.raises(
            ValueError, match=r"first field 'time' \(float64\) is read as the event"
        ):
            M4SurvivalEstimator(**TINY).fit(X, swapped)

    def test_integer_event(self, data):
        X, y = data
        event, time = fields(y)
        as_int = np.rec.fromarrays([event.astype(int), time], names="dead,months").view(np.ndarray)
        with pytest.raises(ValueError, match=r"'dead'.* 0/1 .*event.astype\(bool\)"):
            M4SurvivalEstimator(**TINY).fit(X, as_int)

    def test_time_before_integer_event(self, data):
        X, y = data
        event, time = fields(y)
        swapped = np.rec.fromarrays([time, event.astype(int)], names="time,event")
        with pytest.raises(ValueError, match=r"second field 'event' \(int64, 0/1 values\)"):
            M4SurvivalEstimator(**TINY).fit(X, swapped.view(np.ndarray))

    @pytest.mark.parametrize(("value", "problem"), [(np.nan, "NaN"), (np.inf, "infinite")])
    def test_bad_time_names_its_rows(self, data, value, problem):
        X, y = data
        event, time = fields(y)
        time = time.copy()
        time[[3, 9]] = value
        with pytest.raises(ValueError, match=rf"'time' is {problem} in rows \[3, 9\]"):
            M4SurvivalEstimator(**TINY).fit(X, Surv.from_arrays(event, time))

    def test_categorical_column(self, data):
        X, y = data
        X = X.assign(clinical__stage=pd.Categorical(np.resize(["I", "II", "III"], len(X))))
        with pytest.raises(ValueError, match=r"'clinical__stage' \(category\)\. Encode"):
            M4SurvivalEstimator(**TINY).fit(X, y)

    def test_dropped_modality_at_predict(self, fitted, data):
        X, _ = data
        dropped = X.loc[:, ~X.columns.str.startswith("pathology__")]
        match = r"yet now missing(.|\n)*'pathology' \(16 of 16 columns\)(.|\n)*NaN in all"
        with pytest.raises(ValueError, match=match):
            fitted.predict(dropped)
        with (
            pytest.warns(UserWarning, match="valid feature names"),
            pytest.raises(ValueError, match=r"expecting 40 features(.|\n)*'pathology'"),
        ):
            fitted.predict(dropped.to_numpy())

    @pytest.mark.parametrize("split", [False, True])
    def test_column_transformer_prefix_merging_modalities_warns(self, data, split):
        X, y = data
        mri = [c for c in X.columns if c.startswith(("t1__", "t2__"))]
        pathology = [c for c in X.columns if c.startswith("pathology__")]
        transformers = (
            [("emb", StandardScaler(), mri), ("path", StandardScaler(), pathology)]
            if split
            else [("emb", StandardScaler(), mri + pathology)]
        )
        scale = ColumnTransformer(transformers).set_output(transform="pandas")
        Xt = scale.fit_transform(X)
        kinds = "t1, t2" if split else "pathology, t1, t2"
        with pytest.warns(UserWarning, match=rf"'emb' holds {kinds}.*verbose_feature_names_out"):
            model = M4SurvivalEstimator(**TINY).fit(Xt, y)
        assert list(model.modalities_) == (["emb", "path"] if split else ["emb"])
        Xt = scale.set_params(verbose_feature_names_out=False).fit_transform(X)
        assert list(M4SurvivalEstimator(**TINY).fit(Xt, y).modalities_) == list(WIDTHS)

    def test_partial_gap_of_an_unnamed_table_says_the_names_were_lost(self, data):
        X, y = data
        values = X.to_numpy().copy()
        values[:20, -16:] = np.nan  # pathology missing, but X no longer says so
        with pytest.raises(ValueError, match=r"only some(.|\n)*no '<modality>__' column names"):
            M4SurvivalEstimator(**TINY).fit(values, y)

    def test_wide_array_as_one_token_warns(self, data):
        X, y = data
        wide = np.hstack([X.to_numpy()] * 5)  # 200 columns, no names
        with pytest.warns(UserWarning, match="no column names, so all its 200 columns form one"):
            M4SurvivalEstimator(**TINY).fit(wide, y)

    def test_columns_left_out_of_modalities_warn(self, data):
        X, y = data
        with pytest.warns(UserWarning, match=r"leaves 16 of the 40 columns .* in no modality"):
            model = M4SurvivalEstimator(**TINY, modalities={"mri": "^t[12]__"}).fit(X, y)
        assert list(model.modalities_) == ["mri"]


class TestBadInput:
    @pytest.mark.parametrize(
        ("mutate", "error", "match"),
        [
            (
                lambda X, y: (X.assign(**{"t1__medimageinsight__0": np.nan}).iloc[:3], y[:3]),
                ValueError,
                "modality 't1' has NaN in only some",
            ),
            (
                lambda X, y: (X.replace({X.iloc[4, 20]: np.inf}), y),
                ValueError,
                r"modality 't2' has infinite values in rows \[4\]",
            ),
            (
                lambda X, y: (X.astype(object).assign(**{"t1__medimageinsight__1": "a"}), y),
                ValueError,
                r"not numeric: 't1__medimageinsight__1' \((object|str)\)\. Encode them",
            ),
            (
                lambda X, y: (X.mask(np.repeat((X.index == 2)[:, None], X.shape[1], 1)), y),
                ValueError,
                r"rows \[2\] have every modality missing",
            ),
            (lambda X, y: (X, np.ones(len(y))), ValueError, "y must be a structured array"),
            (
                lambda X, y: (X, Surv.from_arrays(fields(y)[0], -fields(y)[1])),
                ValueError,
                r"time field .* is negative in rows \[0, 1, 2, 3, 4\] and 155 more",
            ),
            (lambda X, y: (X, y[:10]), ValueError, "y has 10 samples but X has 160"),
        ],
        ids=[
            "partial-nan",
            "inf",
            "strings",
            "all-missing-row",
            "plain-y",
            "negative-time",
            "length",
        ],
    )
    def test_bad_data(self, data, mutate, error, match):
        X, y = mutate(*data)
        with pytest.raises(error, match=match):
            M4SurvivalEstimator(**TINY).fit(X, y)

    @pytest.mark.parametrize(
        ("params", "match"),
        [
            ({"adapter": "lstm"}, "'adapter' parameter"),
            ({"d_model": 0}, "'d_model' parameter"),
            ({"n_layers": -1}, "'n_layers' parameter"),
            ({"batch_size": 0}, "'batch_size' parameter"),
            ({"swa_fraction": 1.5}, "'swa_fraction' parameter"),
            ({"dropout": 1.5}, "'dropout' parameter"),
            ({"risk_bound": 0.0}, "'risk_bound' parameter"),
            ({"ties": "exact"}, "'ties' parameter"),
            ({"adapter": "transformer", "d_model": 8, "n_heads": 3}, "divisible by n_heads"),
            ({"encoder_groups": {"mri": ["t1", "ct"]}}, "names modality 'ct'"),
            ({"encoder_groups": {"all": ["t1", "pathology"]}}, "different widths"),
            ({"modalities": {"t1": "^t1__", "t1b": [0]}}, "in both modality"),
            ({"device": "tpu"}, "not a torch device"),
            ({"early_stopping": True, "validation_fraction": 0.01}, "too few"),
        ],
    )
    def test_bad_parameters(self, data, params, match):
        with pytest.raises(ValueError, match=match):
            M4SurvivalEstimator(**TINY | params).fit(*data)

    def test_early_stopping_with_a_single_censored_sample(self, data):
        X, y = data
        event = np.ones(len(y), dtype=bool)
        event[0] = False
        y_one = Surv.from_arrays(event, fields(y)[1])
        with pytest.raises(ValueError, match="hold a single censored sample"):
            M4SurvivalEstimator(**TINY | {"early_stopping": True}).fit(X, y_one)

    def test_wrong_column_count_at_predict(self, fitted, data):
        X, _ = data
        with pytest.raises(ValueError, match="Feature names seen at fit time, yet now missing"):
            fitted.predict(X.iloc[:, :-1])
        model = M4SurvivalEstimator(**TINY).fit(X.to_numpy(), data[1])
        with pytest.raises(ValueError, match="X has 39 features, but M4SurvivalEstimator is"):
            model.predict(X.to_numpy()[:, :-1])

    def test_unfitted(self, data):
        from sklearn.exceptions import NotFittedError

        with pytest.raises(NotFittedError):
            M4SurvivalEstimator().predict(data[0])


class TestTrainingOptions:
    def test_linear_term_keeps_wide_inputs_off_the_bound(self):
        # thousands of standardised embedding columns, as in the paper: a gain that did
        # not shrink with the width drove most training risks into the bound in an epoch
        X, y = make_multimodal_survival(170, random_state=0)
        X = StandardScaler().set_output(transform="pandas").fit_transform(X)
        model = M4SurvivalEstimator(max_epochs=2, random_state=0).fit(X, y)
        assert np.mean(np.abs(model.predict(X)) > 0.95 * model.risk_bound) < 0.05

    def test_linear_term(self, data):
        X, y = data
        with_term = M4SurvivalEstimator(**TINY).fit(X, y)
        coefficients = with_term.net_.module_.linear.weight.detach()
        assert coefficients.shape == (X.shape[1],)
        assert coefficients.abs().min() > 0  # trained away from its zero start
        without = M4SurvivalEstimator(**TINY | {"linear_term": False}).fit(X, y)
        assert without.net_.module_.linear is None
        assert not np.allclose(with_term.predict(X), without.predict(X))

    def test_early_stopping_monitors_validation_c_index(self, data):
        X, y = data
        model = M4SurvivalEstimator(
            **TINY
            | {"max_epochs": 40, "early_stopping": True, "patience": 2, "validation_fraction": 0.25}
        ).fit(X, y)
        history = model.net_.history
        scores = history[:, "valid_cindex"]
        assert all(0.0 <= s <= 1.0 for s in scores)
        assert len(history) < 40

    def test_verbose_shows_progress(self, data, capsys):
        X, y = data
        M4SurvivalEstimator(**TINY | {"verbose": 1, "max_epochs": 1}).fit(X, y)
        assert "train_loss" in capsys.readouterr().out

    def test_extra_callbacks_run(self, data):
        from skorch.callbacks import Callback

        class Count(Callback):
            epochs = 0

            def on_epoch_end(self, net, **kwargs):
                Count.epochs += 1

        M4SurvivalEstimator(**TINY | {"callbacks": [Count()]}).fit(*data)
        assert Count.epochs == TINY["max_epochs"]


class TestWeightAveraging:
    """The final weights are the mean of the end-of-epoch weights of the last epochs."""

    @staticmethod
    def _record_epochs(monkeypatch):
        from sksurvfusion import _training

        snapshots = []
        original = _training._WeightAveraging.on_epoch_end

        def on_epoch_end(self, net, **kwargs):
            snapshots.append([p.detach().clone() for p in net.module_.parameters()])
            return original(self, net, **kwargs)

        monkeypatch.setattr(_training._WeightAveraging, "on_epoch_end", on_epoch_end)
        return snapshots

    # round(fraction * 5) epochs; fewer than two keep the last weights
    @pytest.mark.parametrize(("swa_fraction", "averaged"), [(0.4, 2), (0.7, 4), (1.0, 5), (0.2, 1)])
    def test_average_of_the_last_epochs(self, data, monkeypatch, swa_fraction, averaged):
        snapshots = self._record_epochs(monkeypatch)
        model = M4SurvivalEstimator(**TINY | {"max_epochs": 5, "swa_fraction": swa_fraction})
        model.fit(*data)
        assert len(snapshots) == 5
        for k, param in enumerate(model.net_.module_.parameters()):
            expected = torch.stack([epoch[k] for epoch in snapshots[-averaged:]]).mean(0)
            assert_close_to_scale(param, expected)  # a running mean against one mean
        # the average is what predicts, and the Breslow baseline is fitted on it
        X, y = data
        np.testing.assert_allclose(
            model.cum_baseline_hazard_.y,
            BreslowEstimator().fit(model.predict(X), *fields(y)).cum_baseline_hazard_.y,
        )

    @pytest.mark.parametrize("epochs", [None, 4, 8])
    def test_partial_fit_averages_the_end_of_its_own_epochs(self, data, monkeypatch, epochs):
        X, y = data
        model = M4SurvivalEstimator(**TINY | {"max_epochs": 6, "swa_fraction": 0.5}).fit(X, y)
        snapshots = self._record_epochs(monkeypatch)
        inputs, target = TestTrainingLoop._batch(model, X, y)
        model.net_.partial_fit(inputs, target, epochs=epochs)
        run = 6 if epochs is None else epochs
        assert len(snapshots) == run
        for k, param in enumerate(model.net_.module_.parameters()):
            last = snapshots[-round(0.5 * run) :]
            assert_close_to_scale(param, torch.stack([e[k] for e in last]).mean(0))

    def test_zero_keeps_the_last_weights(self, data):
        from skorch.callbacks import Callback

        class Last(Callback):
            def on_epoch_end(self, net, **kwargs):
                self.weights = [p.detach().clone() for p in net.module_.parameters()]

        last = Last()
        model = M4SurvivalEstimator(**TINY | {"swa_fraction": 0.0, "callbacks": [last]}).fit(*data)
        assert "weight_averaging" not in dict(model.net_.callbacks_)
        for param, expected in zip(model.net_.module_.parameters(), last.weights, strict=True):
            torch.testing.assert_close(param.detach(), expected, rtol=0, atol=0)

    def test_user_callbacks_see_the_average(self, data, monkeypatch):
        from skorch.callbacks import Callback

        class AtEnd(Callback):
            def on_train_end(self, net, **kwargs):
                self.weights = [p.detach().clone() for p in net.module_.parameters()]

        at_end = AtEnd()
        model = M4SurvivalEstimator(**TINY | {"swa_fraction": 0.7, "callbacks": [at_end]})
        snapshots = self._record_epochs(monkeypatch)
        model.fit(*data)
        for k, param in enumerate(at_end.weights):
            expected = torch.stack([epoch[k] for epoch in snapshots[-2:]]).mean(0)
            assert_close_to_scale(param, expected)  # round(0.7 * 3) epochs

    def test_not_with_early_stopping(self, data):
        model = M4SurvivalEstimator(
            **TINY
            | {
                "max_epochs": 4,
                "early_stopping": True,
                "validation_fraction": 0.25,
                "swa_fraction": 0.5,
            }
        )
        with pytest.warns(UserWarning, match="swa_fraction=0.5 is not used with early_stopping"):
            model.fit(*data)
        assert "weight_averaging" not in dict(model.net_.callbacks_)


class TestTrainingLoop:
    """The net trains its parameters through flat buffers; the steps must be AdamW's."""

    @staticmethod
    def _batch(model, X, y):
        x = torch.from_numpy(X.to_numpy(dtype=np.float32))
        mask = torch.from_numpy(modality_mask(X.to_numpy(dtype=np.float32), model.modalities_))
        event, time = fields(y)
        target = torch.from_numpy(np.column_stack([event, time]).astype(np.float64))
        return {"x": x, "mask": mask}, target

    def test_steps_equal_per_parameter_adamw(self, data):
        X, y = data
        model = M4SurvivalEstimator(**TINY | {"dropout": 0.0, "max_epochs": 1, "lr": 1e-2})
        net = model.fit(X, y).net_
        net.initialize_optimizer()  # fresh optimizer state on the current weights
        reference = copy.deepcopy(net.module_)
        # torch's default, one-tensor-at-a-time AdamW on the separate parameters
        optimizer = torch.optim.AdamW(
            reference.parameters(), lr=1e-2, weight_decay=model.weight_decay, foreach=False
        )
        # The flat buffers give a parameter that no row uses (the mask token, in batches
        # without missing modalities) a zero gradient, as the documented semantics say.
        for param in reference.parameters():
            param.grad = torch.zeros_like(param)
        inputs, target = self._batch(model, X, y)
        for _ in range(5):
            net.train_step((inputs, target))
            optimizer.zero_grad(set_to_none=False)
            risk = reference(**inputs)
            net.criterion_(risk, target).backward()
            optimizer.step()
        # The fused AdamW kernel rounds differently from the one-tensor loop, and Adam's
        # step divides by the root of the squared gradients, so a parameter near zero
        # differs on the scale of the network's parameters, not its own.
        scale = max(p.abs().max().item() for p in reference.parameters())
        for (name, trained), expected in zip(
            net.module_.named_parameters(), reference.parameters(), strict=True
        ):
            assert_close_to_scale(trained, expected, scale=scale, msg=name)
            assert_close_to_scale(trained.grad, expected.grad, rel=1e-4, msg=name)

    def test_training_goes_on_from_replaced_parameters(self, data):
        # unpickling or module.to() give parameters new tensors: the next fit must
        # train those, not the optimizer's stale copy
        X, y = data
        model = M4SurvivalEstimator(**TINY | {"max_epochs": 1}).fit(X, y)
        net = model.net_
        for param in net.module_.parameters():
            param.data = param.data + 1.0
        before = [p.detach().clone() for p in net.module_.parameters()]
        net.partial_fit(*self._batch(model, X, y), epochs=1)
        change = max(
            (p.detach() - b).abs().max().item()
            for p, b in zip(net.module_.parameters(), before, strict=True)
        )
        assert 0.0 < change < 0.1

    def test_frozen_parameters_stay_frozen(self, data):
        from skorch.callbacks import Freezer

        X, y = data
        # weight decay must not move parameters a callback froze before the first step
        frozen = {}
        for epochs in (1, 3):
            model = M4SurvivalEstimator(
                **TINY | {"max_epochs": epochs, "callbacks": [Freezer("tokenizer.*")]}
            ).fit(X, y)
            frozen[epochs] = dict(model.net_.module_.tokenizer.named_parameters())
        for name, value in frozen[1].items():
            torch.testing.assert_close(frozen[3][name], value, rtol=0, atol=0, msg=name)


class TestInSearches:
    def test_pipeline_grid_over_adapters_models_and_width(self):
        X, y = make_multimodal_survival(
            90,
            modalities={"mri": 8, "pathology": 8},
            model_names={"mri": "medimageinsight", "pathology": "uni2h"},
            random_state=4,
        )
        other = make_multimodal_survival(
            90,
            modalities={"mri": 8, "pathology": 8},
            model_names={"mri": "biomedclip", "pathology": "gigapath"},
            random_state=4,
        )[0]
        X = pd.concat([X, other], axis=1)
        scale = ColumnTransformer(
            [
                (m, StandardScaler(), make_column_selector(pattern=f"^{m}__"))
                for m in ("mri", "pathology")
            ],
            verbose_feature_names_out=False,
        ).set_output(transform="pandas")
        pipe = Pipeline(
            [
                ("select", ModalitySelector()),
                ("scale", scale),
                ("model", M4SurvivalEstimator(**TINY | {"max_epochs": 1})),
            ]
        )
        grid = {
            "select__models": [
                {"mri": "medimageinsight", "pathology": "uni2h"},
                {"mri": "biomedclip", "pathology": "gigapath"},
            ],
            "model__adapter": ["mamba", "transformer", "mlp"],
            "model__d_model": [8, 16],
        }
        search = GridSearchCV(pipe, grid, cv=KFold(2, shuffle=True, random_state=0), n_jobs=2)
        search.fit(X, y)
        assert len(search.cv_results_["params"]) == 12
        assert np.isfinite(search.cv_results_["mean_test_score"]).all()

    def test_scikit_survival_scorers(self, data):
        X, y = data
        _, time = fields(y)
        times = np.percentile(time, [20, 40, 60])
        for scorer, params in [
            (as_concordance_index_ipcw_scorer, {"tau": times[-1]}),
            (as_integrated_brier_score_scorer, {"times": times}),
        ]:
            wrapped = scorer(M4SurvivalEstimator(**TINY), **params)
            search = GridSearchCV(
                wrapped, {"estimator__adapter": ["mamba", "mlp"]}, cv=KFold(2), error_score="raise"
            ).fit(X, y)
            assert np.isfinite(search.cv_results_["mean_test_score"]).all()


class TestLargeInputs:
    """What makes 100,000 patients of 5,632 columns fit in memory and predict fast: a
    float32 table reaches the network uncopied, the training iterator gathers a few
    megabytes at a time, and the modality mask reads ``X`` without copying it."""

    @staticmethod
    def _spy_on_inputs(monkeypatch):
        """The arrays that ``infer`` gets and the tensors the skorch net is fitted on."""
        from sksurvfusion import _training
        from sksurvfusion import estimator as estimator_module

        inferred, fitted = [], []
        infer = estimator_module.infer

        def spy_infer(module, X, mask, method, device):
            inferred.append(X)
            return infer(module, X, mask, method, device)

        fit = _training._FlatSurvivalNet.fit

        def spy_fit(net, X, y=None, **fit_params):
            fitted.append(X["x"])
            return fit(net, X, y, **fit_params)

        monkeypatch.setattr(estimator_module, "infer", spy_infer)
        monkeypatch.setattr(_training._FlatSurvivalNet, "fit", spy_fit)
        return inferred, fitted

    @pytest.mark.parametrize("container", ["frame", "array"])
    def test_float32_input_is_not_copied(self, data, monkeypatch, container):
        X, y = data
        values = np.ascontiguousarray(X.to_numpy(dtype=np.float32))
        frame = pd.DataFrame(values, columns=X.columns, copy=False)
        assert np.shares_memory(frame.to_numpy(), values)
        X_in = frame if container == "frame" else values
        inferred, fitted = self._spy_on_inputs(monkeypatch)
        model = M4SurvivalEstimator(**TINY).fit(X_in, y)
        model.predict(X_in)
        model.transform(X_in)
        assert len(inferred) == 3  # the training risks, predict, transform
        assert len(fitted) == 1
        for array in inferred:
            assert array.dtype == np.float32
            assert np.shares_memory(array, values)
        assert fitted[0].dtype == torch.float32
        assert np.shares_memory(fitted[0].numpy(), values)

    def test_read_only_input(self, data):
        # pandas 3 hands out read-only views of a frame's values; torch's warning about
        # tensors of non-writable arrays would reach the user (an error in this suite)
        X, y = data
        values = np.ascontiguousarray(X.to_numpy(dtype=np.float32))
        expected = M4SurvivalEstimator(**TINY).fit(values, y).predict(values)
        values.setflags(write=False)
        model = M4SurvivalEstimator(**TINY).fit(values, y)
        np.testing.assert_array_equal(model.predict(values), expected)
        frame = pd.DataFrame(values, columns=X.columns, copy=False)
        assert not frame.to_numpy().flags.writeable
        model.fit(frame, y).predict(frame)
        assert not values.flags.writeable

    @pytest.mark.parametrize(
        "convert",
        [
            lambda X: X.astype(np.float64),
            lambda X: X.astype(np.float64).to_numpy(),
            lambda X: X.astype({X.columns[0]: np.float64}),  # mixed float32 and float64
            lambda X: pd.DataFrame(np.asfortranarray(X.to_numpy()), columns=X.columns),
        ],
        ids=["float64-frame", "float64-array", "mixed-frame", "fortran-frame"],
    )
    def test_other_input_reaches_the_network_as_float32(self, data, monkeypatch, convert):
        X, y = data
        converted = convert(X)
        # the same values in float32, in the same container (an array is one modality)
        same = X if hasattr(converted, "columns") else X.to_numpy()
        expected = M4SurvivalEstimator(**TINY).fit(same, y).predict(same)
        inferred, fitted = self._spy_on_inputs(monkeypatch)
        model = M4SurvivalEstimator(**TINY).fit(converted, y)
        np.testing.assert_array_equal(model.predict(converted), expected)
        assert len(inferred) == 2  # the training risks, predict
        for array in inferred:  # an array, or rows of a frame read a slice at a time
            part = array[0:7]
            assert part.dtype == np.float32
            assert part.flags.c_contiguous
        assert fitted[0].dtype == torch.float32

    def test_frame_of_another_dtype_is_predicted_a_slice_at_a_time(self, data, monkeypatch):
        # a float64 frame is converted batch by batch at predict time: no float32 copy of
        # the whole table, the same predictions and errors as for its float32 values
        from sksurvfusion import estimator as estimator_module

        X, y = data
        model = M4SurvivalEstimator(**TINY).fit(X, y)
        expected = model.predict(X)
        wide = X.astype(np.float64)
        whole = []
        validate = estimator_module._validate_features

        def spy(estimator, X, *, reset):
            whole.append(X.shape)
            return validate(estimator, X, reset=reset)

        monkeypatch.setattr(estimator_module, "_validate_features", spy)
        monkeypatch.setattr(estimator_module, "_MASK_CHUNK_ROWS", 7)  # several chunks
        np.testing.assert_array_equal(model.predict(wide), expected)
        np.testing.assert_array_equal(model.transform(wide), model.transform(X))
        assert whole == [X.shape]  # only by transform(X), a float32 frame
        bad = wide.copy()
        bad.iloc[9, 30] = np.inf
        with pytest.raises(ValueError, match=r"modality 'pathology' has infinite values"):
            model.predict(bad)
        with pytest.raises(ValueError, match="Feature names unseen at fit time"):
            model.predict(wide.rename(columns={wide.columns[0]: "t1__other__0"}))

    @pytest.mark.parametrize(
        "frame",
        [
            lambda X: X,
            lambda X: X.astype(np.float64),
            lambda X: X.astype({X.columns[0]: np.float64, X.columns[1]: np.int64}),
            lambda X: X.assign(**{X.columns[2]: X.iloc[:, 2] > 0}),  # a boolean column
            lambda X: X.iloc[::-1],
            lambda X: X.set_axis(range(X.shape[1]), axis=1),  # no names
        ],
        ids=["float32", "float64", "mixed", "bool", "reversed", "unnamed"],
    )
    def test_frames_validate_as_validate_data_does(self, data, frame):
        from sklearn.utils.validation import validate_data

        from sksurvfusion.estimator import _FeatureProbe, _validate_features

        X = frame(data[0])
        probe, reference = _FeatureProbe(), _FeatureProbe()
        values = _validate_features(probe, X, reset=True)
        expected = validate_data(reference, X, dtype=np.float32, order="C", ensure_all_finite=False)
        np.testing.assert_array_equal(values, expected)
        assert values.dtype == np.float32
        assert values.flags.c_contiguous
        assert probe.n_features_in_ == reference.n_features_in_
        assert hasattr(probe, "feature_names_in_") == hasattr(reference, "feature_names_in_")
        if hasattr(reference, "feature_names_in_"):
            np.testing.assert_array_equal(probe.feature_names_in_, reference.feature_names_in_)

    def test_renamed_columns_at_predict(self, fitted, data):
        X, _ = data
        renamed = X.rename(columns={X.columns[0]: "t1__other__0"})
        with pytest.raises(ValueError, match="Feature names unseen at fit time"):
            fitted.predict(renamed)

    @pytest.mark.parametrize("shuffle", [False, True])
    @pytest.mark.parametrize("rows", [None, [7, 2, 9, 0, 4, 5, 1]], ids=["all", "subset"])
    @pytest.mark.parametrize("gather_bytes", [1, 200, 1 << 30])
    def test_batches_equal_those_of_one_gather(self, monkeypatch, shuffle, rows, gather_bytes):
        from sksurvfusion import _training

        monkeypatch.setattr(_training, "_GATHER_BYTES", gather_bytes)
        gathered = []

        class Recorded(torch.Tensor):
            """Records the length of each index that gathers its rows."""

            @classmethod
            def __torch_function__(cls, func, types, args=(), kwargs=None):
                if func is torch.Tensor.__getitem__ and isinstance(args[1], torch.Tensor):
                    gathered.append(len(args[1]))
                return super().__torch_function__(func, types, args, kwargs or {})

        X = {
            "x": torch.arange(40.0).reshape(10, 4).as_subclass(Recorded),
            "mask": torch.arange(10) % 3 > 0,
        }
        y = torch.arange(20.0).reshape(10, 2)
        rows = None if rows is None else torch.tensor(rows)
        batches = _training._TensorBatches(
            X, y, 3, shuffle, torch.Generator().manual_seed(0), rows=rows
        )
        index = torch.arange(10) if rows is None else rows
        if shuffle:
            index = index[torch.randperm(len(index), generator=torch.Generator().manual_seed(0))]
        expected = index.split(3)
        assert len(batches) == len(expected)
        got = list(batches)
        by_iterator = list(gathered)  # not the comparisons' below
        assert len(got) == len(expected)
        for (X_batch, y_batch), rows_batch in zip(got, expected, strict=True):
            assert torch.equal(X_batch["x"], X["x"][rows_batch])
            assert torch.equal(X_batch["mask"], X["mask"][rows_batch])
            assert torch.equal(y_batch, y[rows_batch])
        # rows of 4 float32 and a bool: at most gather_bytes of them at once, or a batch
        assert bool(by_iterator) == (shuffle or rows is not None)
        assert max(by_iterator, default=0) <= max(3, gather_bytes // 17)

    @pytest.mark.parametrize("params", [{}, {"early_stopping": True}], ids=["all", "split"])
    def test_fit_is_that_of_one_gather_per_epoch(self, data, monkeypatch, params):
        from sksurvfusion import _training

        X, y = data
        model = M4SurvivalEstimator(**TINY | params)
        expected = model.fit(X, y).predict(X)
        monkeypatch.setattr(_training, "_GATHER_BYTES", 1)  # one batch per gather
        np.testing.assert_array_equal(model.fit(X, y).predict(X), expected)

    @pytest.mark.parametrize(
        "defect",
        ["none", "missing", "overflow", "partial", "inf", "inf-minus-inf", "empty-row"],
    )
    @pytest.mark.parametrize("contiguous", [True, False])
    def test_mask_equals_modality_mask(self, defect, contiguous):
        from sksurvfusion.estimator import _MASK_CHUNK_ROWS, _modality_mask

        rng = np.random.default_rng(0)
        n = _MASK_CHUNK_ROWS + 100  # two chunks
        X = rng.standard_normal((n, 12)).astype(np.float32)
        if contiguous:
            modalities = {"a": np.arange(0, 5), "b": np.arange(5, 9), "c": np.arange(9, 12)}
        else:
            modalities = {"a": np.arange(0, 10, 2), "b": np.arange(1, 9, 2), "c": [9, 11, 10]}
        modalities = {name: np.asarray(columns) for name, columns in modalities.items()}
        rows = [3, _MASK_CHUNK_ROWS + 7, n - 1]
        b = modalities["b"]
        if defect != "none":
            X[np.ix_(rows, b)] = np.nan
        if defect == "overflow":  # finite values whose sum overflows
            X[rows[0], modalities["a"]] = 3e38
        elif defect == "partial":
            X[rows[1], b[0]] = 1.0
        elif defect == "inf":
            X[rows[2], modalities["c"][1]] = np.inf
        elif defect == "inf-minus-inf":
            X[rows[0], modalities["a"][:2]] = [np.inf, -np.inf]
        elif defect == "empty-row":
            X[rows[1]] = np.nan
        try:
            expected = modality_mask(X, modalities)
        except ValueError as exc:
            with pytest.raises(ValueError) as raised:
                _modality_mask(X, modalities, None, modalities)
            assert str(raised.value) == str(exc)
        else:
            np.testing.assert_array_equal(_modality_mask(X, modalities, None, modalities), expected)
            assert expected[rows[0], 1] == (defect == "none")

    def test_inference_batches(self):
        from sksurvfusion._training import (
            _INFERENCE_BATCH,
            _INFERENCE_BYTES,
            _INFERENCE_MIN_BATCH,
            _inference_batch,
        )

        assert _inference_batch(5632, "cpu") == _INFERENCE_BYTES // (4 * 5632)
        assert _inference_batch(40, "cpu") == _INFERENCE_BATCH
        assert _inference_batch(10**7, "cpu") == _INFERENCE_MIN_BATCH
        assert _inference_batch(5632, "cuda") == _INFERENCE_BATCH

    def test_failed_predict_leaves_the_model_as_it_was(self, data):
        X, y = data
        model = M4SurvivalEstimator(**TINY).fit(X, y)
        before = model.predict(X)
        bad = X.copy()
        bad.iloc[5, 30] = np.inf
        with pytest.raises(ValueError, match=r"modality 'pathology' has infinite values"):
            model.predict(bad)
        with pytest.raises(ValueError, match=r"modality 'pathology' has infinite values"):
            model.fit(bad, y)
        np.testing.assert_array_equal(model.predict(X), before)
