import doctest
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.util import Surv

from sksurvfusion import model_selection
from sksurvfusion.baselines import make_cox_baseline
from sksurvfusion.datasets import load_breast_cancer, make_multimodal_survival
from sksurvfusion.estimator import M4SurvivalEstimator
from sksurvfusion.modality import ModalitySelector
from sksurvfusion.model_selection import (
    RepeatedSurvivalStratifiedKFold,
    SurvivalStratifiedKFold,
    ablation_table,
)


@pytest.fixture(scope="module")
def breast_cancer():
    return load_breast_cancer()


@pytest.fixture
def survival_target():
    rng = np.random.default_rng(0)
    # 25 % events: unstratified folds of 20 would often hold 2 or 8 events
    event = rng.random(101) < 0.25
    time = rng.exponential(10, size=101)
    # odd field names: the event must be read by position
    return np.rec.fromarrays([event, time], names=["status", "days"]).view(np.ndarray)


def test_docstring_examples():
    result = doctest.testmod(model_selection, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


def check_partition_and_event_rates(splits, event, n_splits):
    tests = [test for _, test in splits]
    for train, test in splits:
        assert np.intersect1d(train, test).size == 0
        assert np.union1d(train, test).size == event.size
    np.testing.assert_array_equal(np.sort(np.concatenate(tests)), np.arange(event.size))
    for test in tests:
        assert abs(event[test].mean() - event.mean()) <= 1 / n_splits


class TestSurvivalStratifiedKFold:
    @pytest.mark.parametrize("n_splits", [2, 3, 5, 10])
    @pytest.mark.parametrize("shuffle", [False, True])
    def test_folds_partition_with_the_overall_event_rate(self, survival_target, n_splits, shuffle):
        cv = SurvivalStratifiedKFold(n_splits, shuffle=shuffle, random_state=0 if shuffle else None)
        splits = list(cv.split(np.zeros((101, 1)), survival_target))
        assert len(splits) == cv.get_n_splits() == n_splits
        check_partition_and_event_rates(splits, survival_target["status"], n_splits)

    def test_same_folds_as_stratified_kfold_on_the_event(self, survival_target):
        X = np.zeros((101, 1))
        ours = SurvivalStratifiedKFold(4, shuffle=True, random_state=3).split(X, survival_target)
        theirs = StratifiedKFold(4, shuffle=True, random_state=3).split(
            X, survival_target["status"]
        )
        for (train, test), (train_ref, test_ref) in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(train, train_ref)
            np.testing.assert_array_equal(test, test_ref)

    def test_plain_event_indicator(self, survival_target):
        event = survival_target["status"]
        splits = list(SurvivalStratifiedKFold(3).split(np.zeros((101, 1)), event))
        check_partition_and_event_rates(splits, event, 3)

    def test_needs_y(self):
        with pytest.raises(ValueError, match="need y"):
            list(SurvivalStratifiedKFold(3).split(np.zeros((10, 1)), None))

    def test_repr(self):
        assert repr(SurvivalStratifiedKFold(3)) == (
            "SurvivalStratifiedKFold(n_splits=3, random_state=None, shuffle=False)"
        )

    def test_cv_argument_of_cross_val_score(self, breast_cancer):
        X, y = breast_cancer
        scores = cross_val_score(
            make_cox_baseline(), X, y, cv=SurvivalStratifiedKFold(3, shuffle=True, random_state=0)
        )
        assert scores.shape == (3,)
        assert ((scores > 0.5) & (scores < 1)).all()


class TestRepeatedSurvivalStratifiedKFold:
    def test_repeats_partition_and_differ(self, survival_target):
        cv = RepeatedSurvivalStratifiedKFold(n_splits=4, n_repeats=3, random_state=0)
        splits = list(cv.split(np.zeros((101, 1)), survival_target))
        assert len(splits) == cv.get_n_splits() == 12
        for repeat in range(3):
            check_partition_and_event_rates(
                splits[4 * repeat : 4 * repeat + 4], survival_target["status"], 4
            )
        assert not np.array_equal(splits[0][1], splits[4][1])

    def test_reproducible_with_an_int_seed(self, survival_target):
        cv = RepeatedSurvivalStratifiedKFold(n_splits=3, n_repeats=2, random_state=7)
        first = [test for _, test in cv.split(np.zeros((101, 1)), survival_target)]
        second = [test for _, test in cv.split(np.zeros((101, 1)), survival_target)]
        for a, b in zip(first, second, strict=True):
            np.testing.assert_array_equal(a, b)

    def test_repr(self):
        assert repr(RepeatedSurvivalStratifiedKFold(n_splits=3, n_repeats=2)) == (
            "RepeatedSurvivalStratifiedKFold(n_repeats=2, n_splits=3, random_state=None)"
        )


def c_index(estimator, X, y):
    return estimator.score(X, y)


def negative_c_index(estimator, X, y):
    return -estimator.score(X, y)


class TestAblationTable:
    def test_grid_over_alpha_and_components(self, breast_cancer):
        X, y = breast_cancer
        search = GridSearchCV(
            make_cox_baseline(),
            {"cox__alpha": [0.1, 10.0, 1000.0], "preprocess__n_components": [2, 8]},
            cv=SurvivalStratifiedKFold(3),
        ).fit(X, y)
        table = ablation_table(search)
        assert table.shape == (6, 6)
        assert table.columns.tolist() == [
            "alpha",
            "n_components",
            "mean_score",
            "sd_score",
            "rank_score",
            "fit_time",
        ]
        assert table.index.name == "config"
        assert table["rank_score"].is_monotonic_increasing
        results = search.cv_results_
        np.testing.assert_allclose(table["mean_score"], results["mean_test_score"][table.index])
        np.testing.assert_allclose(table["sd_score"], results["std_test_score"][table.index])
        for config, row in table.iterrows():
            assert row["alpha"] == results["params"][config]["cox__alpha"]
            assert row["n_components"] == results["params"][config]["preprocess__n_components"]
        assert table.iloc[0]["mean_score"] == pytest.approx(search.best_score_)

    def test_multi_metric_sorted_by_refit_score(self, breast_cancer):
        X, y = breast_cancer
        search = GridSearchCV(
            make_cox_baseline(n_components=2),
            {"cox__alpha": [0.1, 1000.0]},
            scoring={"neg_c": negative_c_index, "c": c_index},
            refit="c",
            return_train_score=True,
            cv=SurvivalStratifiedKFold(3),
        ).fit(X, y)
        table = ablation_table(search)
        assert table.columns.tolist() == [
            "alpha",
            "mean_neg_c",
            "sd_neg_c",
            "rank_neg_c",
            "mean_c",
            "sd_c",
            "rank_c",
            "mean_train_neg_c",
            "sd_train_neg_c",
            "mean_train_c",
            "sd_train_c",
            "fit_time",
        ]
        assert table["rank_c"].tolist() == [1, 2]
        np.testing.assert_allclose(table["mean_c"], -table["mean_neg_c"])

    def test_modality_selector_models_become_one_column_per_modality(self):
        rng = np.random.default_rng(0)
        columns = [f"mri__{m}__{k}" for m in ("mii", "clip") for k in range(3)]
        columns += [f"path__uni__{k}" for k in range(3)]
        X = pd.DataFrame(rng.normal(size=(60, 9)), columns=columns)
        y = Surv.from_arrays(rng.random(60) < 0.6, rng.exponential(size=60) * np.exp(-X.iloc[:, 0]))
        pipe = Pipeline([("select", ModalitySelector()), ("model", make_cox_baseline())])
        grid = {
            "select__models": [
                {"mri": "mii", "path": "uni"},
                {"mri": "clip", "path": None},
                {"mri": None},
            ],
            "model__cox__alpha": [1.0, 10.0],
        }
        search = GridSearchCV(pipe, grid, cv=SurvivalStratifiedKFold(2)).fit(X, y)
        table = ablation_table(search)
        assert len(table) == 6
        # ParameterGrid sorts the parameter names
        assert table.columns[:3].tolist() == ["alpha", "model[mri]", "model[path]"]
        rows = table.sort_index()
        # mapped to None: dropped; left out of the dict: every column kept
        assert rows["model[mri]"].tolist() == ["mii", "clip", "dropped"] * 2
        assert rows["model[path]"].tolist() == ["uni", "dropped", "all"] * 2
        assert rows["alpha"].tolist() == [1.0] * 3 + [10.0] * 3

    def test_names_and_objects_made_readable(self):
        search = SimpleNamespace(
            refit=True,
            cv_results_={
                "params": [
                    {"a__alpha": 1, "b__alpha": 2, "est": CoxPHSurvivalAnalysis(alpha=3.0)},
                    {"a__alpha": 4, "b__alpha": 5, "est": np.log},
                ],
                "mean_test_score": np.array([0.6, 0.7]),
                "std_test_score": np.array([0.01, 0.02]),
                "rank_test_score": np.array([2, 1]),
            },
        )
        table = ablation_table(search)
        assert table.columns.tolist() == [
            "a__alpha",
            "b__alpha",
            "est",
            "mean_score",
            "sd_score",
            "rank_score",
        ]
        assert table.index.tolist() == [1, 0]
        assert table["est"].tolist() == ["log", "CoxPHSurvivalAnalysis(alpha=3.0)"]

    def test_unfitted_search_raises(self):
        search = GridSearchCV(make_cox_baseline(), {"cox__alpha": [1.0]})
        with pytest.raises(ValueError, match="fitted search"):
            ablation_table(search)

    def test_grid_over_adapter(self):
        X, y = make_multimodal_survival(40, {"a": 4, "b": 4}, random_state=0)
        model = M4SurvivalEstimator(
            d_model=8, encoder_hidden=16, n_layers=1, max_epochs=2, batch_size=None, random_state=0
        )
        # one split of the survival folds keeps it at two small fits
        one_split = list(SurvivalStratifiedKFold(2).split(X, y))[:1]
        search = GridSearchCV(
            model, {"adapter": ["mlp", "transformer"]}, cv=one_split, refit=False
        ).fit(X, y)
        table = ablation_table(search)
        assert table.shape == (2, 5)
        assert sorted(table["adapter"]) == ["mlp", "transformer"]
