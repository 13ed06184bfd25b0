import numpy as np
import pytest
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.metrics import integrated_brier_score
from sksurv.nonparametric import CensoringDistributionEstimator
from sksurv.util import Surv

from sksurvfusion._study import candidate_models, run_study
from sksurvfusion.datasets import make_multimodal_survival


def _table(n_samples=150, random_state=0):
    X, y = make_multimodal_survival(
        n_samples, modalities={"mri": 4, "pathology": 4}, random_state=random_state
    )
    event_field, time_field = y.dtype.names
    return X, y[event_field].copy(), y[time_field].astype(float)


def _late_events(event, time):
    # everyone followed past the median has the event: in every split, the longest training
    # time is an event and the test fold holding the longest time reaches beyond it
    return Surv.from_arrays(event | (time > np.median(time)), time)


def _graf_brier(y_train, y_test, estimate, grid):
    """The integrated Brier score by its definition (Graf et al., 1999)."""
    censoring = CensoringDistributionEstimator().fit(y_train)
    event, time = y_test[y_test.dtype.names[0]], y_test[y_test.dtype.names[1]]
    scores = []
    for k, t in enumerate(grid):
        case = event & (time <= t)
        weight_case = np.zeros_like(time)
        weight_case[case] = 1.0 / censoring.predict_proba(time[case])
        weight_control = (time > t) / censoring.predict_proba(np.array([t]))[0]
        scores.append(
            np.mean(weight_case * estimate[:, k] ** 2 + weight_control * (1 - estimate[:, k]) ** 2)
        )
    return np.trapezoid(scores, grid) / (grid[-1] - grid[0])


def _small_study(X, y, tmp_path):
    models = candidate_models(max_epochs=1)
    models = {name: models[name] for name in ("MLP", "Cox (ridge)")}
    return run_study(
        X, y, tmp_path, models=models, n_splits=2, n_repeats=1, heldout_model="MLP", progress=False
    ).scores


class TestIntegratedBrierScore:
    def test_study_runs_when_the_longest_time_is_an_event(self, tmp_path):
        X, event, time = _table()
        y = _late_events(event, time)
        scores = _small_study(X, y, tmp_path)
        assert len(scores) == 2 * 2
        assert scores["ibs"].between(0, 1).all()

    def test_study_runs_on_coarse_follow_up(self, tmp_path):
        X, event, time = _table()
        # follow-up in whole years: the percentiles of the event times coincide
        years = np.ceil(time / time.max() * 4)
        scores = _small_study(X, Surv.from_arrays(event, years), tmp_path)
        assert scores["ibs"].between(0, 1).all()

    def test_follow_up_past_training_counts_as_event_free(self):
        from sksurvfusion._study import _brier_times, _integrated_brier_score

        X, event, time = _table(120)
        y = _late_events(event, time)
        order = np.argsort(time)
        # the longest patient is tested; training ends at an event before it
        test = np.r_[order[-1], order[:-1][1::3]]
        train = np.setdiff1d(order, test)
        assert y[train]["event"][np.argmax(time[train])]
        model = CoxPHSurvivalAnalysis(alpha=1.0).fit(X.iloc[train], y[train])
        survival = model.predict_survival_function(X.iloc[test])

        grid = np.unique(np.percentile(time[y["event"]], np.linspace(10, 70, 7)))
        grid = grid[(grid >= time[test].min()) & (grid < time[train].max())]
        estimate = np.vstack([fn(grid) for fn in survival])
        with pytest.raises(ValueError, match="largest observed time point"):
            integrated_brier_score(y[train], y[test], estimate, grid)

        ibs = _integrated_brier_score(y[train], y[test], survival, _brier_times(time, y["event"]))
        expected = _graf_brier(y[train], y[test], estimate, grid)
        assert ibs == pytest.approx(expected, rel=1e-9)

    def test_equals_scikit_survival_inside_training_follow_up(self):
        from sksurvfusion._study import _brier_times, _integrated_brier_score

        X, event, time = _table(120)
        y = Surv.from_arrays(event, time)
        order = np.argsort(time)
        # the longest patient trains, so every test time lies inside the training follow-up
        test = order[:-1][::3]
        train = np.setdiff1d(order, test)
        model = CoxPHSurvivalAnalysis(alpha=1.0).fit(X.iloc[train], y[train])
        survival = model.predict_survival_function(X.iloc[test])

        grid = np.unique(np.percentile(time[event], np.linspace(10, 70, 7)))
        grid = grid[(grid >= time[test].min()) & (grid < time[test].max())]
        estimate = np.vstack([fn(grid) for fn in survival])
        expected = integrated_brier_score(y[train], y[test], estimate, grid)
        ibs = _integrated_brier_score(y[train], y[test], survival, _brier_times(time, event))
        assert ibs == pytest.approx(expected, rel=1e-9)


def test_describe_modalities_counts_columns_and_missing_patients():
    from sksurvfusion._study import describe_modalities

    X, _ = make_multimodal_survival(
        60,
        modalities={"mri": 5, "pathology": 3},
        model_names={"mri": "medimageinsight", "pathology": None},
        missing_rate={"mri": 0.2, "pathology": 0.0},
        random_state=0,
    )
    X = X.assign(age=1.0)
    spec = {"mri": "^mri__", "pathology": "^pathology__"}
    mri = X.filter(regex="^mri__")
    n_missing = int(mri.isna().all(axis=1).sum())
    assert n_missing > 0
    assert describe_modalities(X, spec) == [
        f"mri: {mri.shape[1]} columns (medimageinsight {mri.shape[1]}), "
        f"missing for {n_missing} patients",
        f"pathology: {X.filter(regex='^pathology__').shape[1]} columns",
        "not used (in no modality): 1 column: age",
    ]
