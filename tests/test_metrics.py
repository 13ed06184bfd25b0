import doctest
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sksurv.metrics import concordance_index_censored
from sksurv.util import Surv

from sksurvfusion import metrics
from sksurvfusion.baselines import make_cox_baseline
from sksurvfusion.datasets import make_multimodal_survival
from sksurvfusion.estimator import M4SurvivalEstimator
from sksurvfusion.metrics import ConcordanceIndexCI, concordance_index_ci, modality_importance


class FirstColumnRisk:
    """A fitted 'model' whose risk is the first column of X."""

    def predict(self, X):
        return np.asarray(X, dtype=float)[:, 0]


def simulate(n, seed):
    """Risk in column 0, times from a proportional-hazards model, odd field names."""
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n)
    event_time = rng.exponential(np.exp(-risk))
    censor_time = rng.exponential(2.0, size=n)
    event = event_time <= censor_time
    time = np.minimum(event_time, censor_time)
    y = np.empty(n, dtype=[("status", bool), ("days", float)])
    y["status"], y["days"] = event, time
    return risk[:, None], y


def test_docstring_examples():
    result = doctest.testmod(metrics, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


class TestConcordanceIndexCI:
    def test_matches_a_direct_bootstrap(self):
        X, y = simulate(60, seed=0)
        event, time = y["status"], y["days"]
        result = concordance_index_ci(
            FirstColumnRisk(), X, y, n_bootstrap=200, confidence_level=0.9, random_state=42
        )
        assert isinstance(result, ConcordanceIndexCI)
        assert result.estimate == concordance_index_censored(event, time, X[:, 0])[0]

        rng = np.random.RandomState(42)
        expected = []
        for _ in range(200):
            rows = rng.randint(60, size=60)
            expected.append(concordance_index_censored(event[rows], time[rows], X[rows, 0])[0])
        np.testing.assert_allclose(result.bootstrap, expected)
        np.testing.assert_allclose([result.low, result.high], np.percentile(expected, [5, 95]))
        assert result.standard_error == pytest.approx(np.std(expected, ddof=1))
        assert result.confidence_level == 0.9
        assert result.low < result.estimate < result.high

    def test_reproducible_with_a_seed(self):
        X, y = simulate(60, seed=1)
        first = concordance_index_ci(FirstColumnRisk(), X, y, n_bootstrap=50, random_state=3)
        second = concordance_index_ci(FirstColumnRisk(), X, y, n_bootstrap=50, random_state=3)
        other = concordance_index_ci(FirstColumnRisk(), X, y, n_bootstrap=50, random_state=4)
        np.testing.assert_array_equal(first.bootstrap, second.bootstrap)
        assert (first.low, first.high) == (second.low, second.high)
        assert not np.array_equal(first.bootstrap, other.bootstrap)

    def test_interval_narrows_with_more_patients(self):
        widths = []
        for n in (50, 400):
            X, y = simulate(n, seed=2)
            result = concordance_index_ci(FirstColumnRisk(), X, y, n_bootstrap=60, random_state=0)
            widths.append(result.high - result.low)
        assert widths[1] < widths[0] / 2  # about sqrt(8) narrower

    def test_skips_resamples_without_a_comparable_pair(self):
        # one event (row 6, time 7) that only row 7 (time 8) outlives: a resample is
        # usable when it holds both
        X = -np.arange(8.0)[:, None]  # the earlier, the riskier: every pair concordant
        y = Surv.from_arrays(np.arange(8) == 6, np.arange(1.0, 9.0))
        result = concordance_index_ci(FirstColumnRisk(), X, y, n_bootstrap=200, random_state=0)
        rng = np.random.RandomState(0)
        usable = sum(np.isin([6, 7], rng.randint(8, size=8)).all() for _ in range(200))
        assert 0 < usable < 200
        assert result.bootstrap.size == usable
        np.testing.assert_array_equal(result.bootstrap, 1.0)

    def test_no_comparable_pair_raises(self):
        X = np.zeros((3, 1))
        y = Surv.from_arrays([True, False, False], [3.0, 1.0, 2.0])
        with pytest.raises(ValueError, match="comparable pairs"):
            concordance_index_ci(FirstColumnRisk(), X, y)

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"n_bootstrap": 0}, "n_bootstrap"),
            ({"confidence_level": 1.0}, "confidence_level"),
        ],
    )
    def test_invalid_arguments(self, kwargs, match):
        X, y = simulate(20, seed=0)
        with pytest.raises(ValueError, match=match):
            concordance_index_ci(FirstColumnRisk(), X, y, **kwargs)

    def test_equality_and_hash(self):
        X, y = simulate(100, 0)
        first = concordance_index_ci(FirstColumnRisk(), X, y, n_bootstrap=20, random_state=0)
        again = concordance_index_ci(FirstColumnRisk(), X, y, n_bootstrap=20, random_state=0)
        other = concordance_index_ci(FirstColumnRisk(), X, y, n_bootstrap=20, random_state=1)
        assert first == again and hash(first) == hash(again)
        assert first != other
        assert len({first, again, other}) == 2

    def test_str(self):
        X, y = simulate(40, seed=0)
        text = str(concordance_index_ci(FirstColumnRisk(), X, y, n_bootstrap=20, random_state=0))
        assert text.startswith("C = 0.") and "95% CI" in text


@pytest.fixture(scope="module")
def signal_and_noise():
    """A 'signal' modality that carries the hazard and a 'noise' modality that does not."""
    rng = np.random.default_rng(0)
    latent = rng.normal(size=300)
    signal = latent[:, None] * rng.normal(size=6) + 0.3 * rng.normal(size=(300, 6))
    noise = rng.normal(size=(300, 6))
    X = pd.DataFrame(
        np.hstack([signal, noise]),
        columns=[f"signal__{k}" for k in range(6)] + [f"noise__{k}" for k in range(6)],
    )
    event_time = rng.exponential(np.exp(-1.5 * latent))
    censor_time = rng.exponential(3.0, size=300)
    y = Surv.from_arrays(event_time <= censor_time, np.minimum(event_time, censor_time))
    model = make_cox_baseline(alpha=1.0).fit(X.iloc[:200], y[:200])
    return model, X.iloc[200:], y[200:]


class TestModalityImportance:
    def test_informative_modality_matters_more_than_noise(self, signal_and_noise):
        model, X, y = signal_and_noise
        table = modality_importance(model, X, y, n_bootstrap=100, random_state=0)
        assert table.columns.tolist() == [
            "modality",
            "n_masked",
            "c_index",
            "c_index_masked",
            "drop",
            "drop_sd",
            "drop_low",
            "drop_high",
        ]
        assert table["modality"].tolist() == ["signal", "noise"]
        signal, noise = table.iloc[0], table.iloc[1]
        assert signal["drop"] > 0.2
        assert abs(noise["drop"]) < 0.05
        assert signal["drop_low"] > noise["drop_high"]
        assert (table["n_masked"] == 100).all()
        # what is left is noise: C near chance
        assert signal["c_index_masked"] == pytest.approx(0.5, abs=0.1)

    def test_drop_is_c_index_minus_masked_c_index(self, signal_and_noise):
        model, X, y = signal_and_noise
        table = modality_importance(model, X, y, n_bootstrap=20, random_state=0)
        event, time = y[y.dtype.names[0]], y[y.dtype.names[1]]
        expected = concordance_index_censored(event, time, model.predict(X))[0]
        np.testing.assert_allclose(table["c_index"], expected)
        masked = X.copy()
        masked[[c for c in X.columns if c.startswith("noise__")]] = np.nan
        with pytest.warns(UserWarning, match="'noise' is missing in rows"):
            masked_risk = model.predict(masked)  # the pipeline imputes it, and says so
        c_masked = concordance_index_censored(event, time, masked_risk)[0]
        row = table.set_index("modality").loc["noise"]
        assert row["c_index_masked"] == pytest.approx(c_masked)
        assert row["drop"] == pytest.approx(expected - c_masked)
        assert row["drop_low"] <= row["drop"] <= row["drop_high"]

    def test_rows_with_only_that_modality_stay_unmasked(self, signal_and_noise):
        model, X, y = signal_and_noise
        X = X.copy()
        noise_columns = [c for c in X.columns if c.startswith("noise__")]
        X.loc[X.index[:30], noise_columns] = np.nan
        # the Cox pipeline never saw 'noise' missing: it imputes these rows, and says so
        with pytest.warns(UserWarning, match="'noise' is missing in rows"):
            table = modality_importance(model, X, y, n_bootstrap=10, random_state=0)
        n_masked = table.set_index("modality")["n_masked"]
        assert n_masked["signal"] == 70
        assert n_masked["noise"] == 70

    def test_modalities_from_the_estimator_or_given(self, signal_and_noise):
        model, X, y = signal_and_noise

        class WithModalities:
            def __init__(self):
                self.modalities_ = {"signal": np.arange(6)}

            def predict(self, X):
                return model.predict(X)

        table = modality_importance(WithModalities(), X, y, n_bootstrap=10, random_state=0)
        assert table["modality"].tolist() == ["signal"]
        table = modality_importance(
            model, X, y, modalities={"first": ["noise__0", "noise__1"]}, n_bootstrap=10
        )
        assert table["modality"].tolist() == ["first"]

    def test_grouping_coarser_than_the_missing_modalities(self):
        # t2 is missing in some rows; "radiology" masks t1 and t2 together
        X, y = make_multimodal_survival(
            80, {"t1": 3, "t2": 3, "path": 2}, missing_rate={"t2": 0.3}, random_state=0
        )
        model = M4SurvivalEstimator(
            d_model=8, encoder_hidden=16, n_layers=1, max_epochs=2, batch_size=None, random_state=0
        ).fit(X, y)
        groups = {"radiology": "^t[12]__", "path": "^path__"}
        table = modality_importance(
            model, X, y, modalities=groups, n_bootstrap=10, random_state=0
        ).set_index("modality")
        masked = X.copy()
        masked.loc[:, masked.columns.str.match("^t[12]__")] = np.nan
        event, time = y[y.dtype.names[0]], y[y.dtype.names[1]]
        expected = concordance_index_censored(event, time, model.predict(masked))[0]
        assert table.loc["radiology", "c_index_masked"] == pytest.approx(expected)
        assert (table["n_masked"] == 80).all()

    def test_integer_frame_is_masked_without_warnings(self):
        X = pd.DataFrame({"a__0": np.arange(20), "b__0": np.arange(20) % 3})
        y = Surv.from_arrays(np.arange(20) % 2 == 0, np.arange(1.0, 21.0))
        model = make_cox_baseline().fit(X, y)
        table = modality_importance(model, X, y, n_bootstrap=10, random_state=0)
        assert len(table) == 2

    def test_fusion_estimator(self):
        X, y = make_multimodal_survival(60, {"a": 4, "b": 4}, random_state=0)
        model = M4SurvivalEstimator(
            d_model=8, encoder_hidden=16, n_layers=1, max_epochs=2, batch_size=None, random_state=0
        ).fit(X, y)
        table = modality_importance(model, X, y, n_bootstrap=10, random_state=0)
        assert sorted(table["modality"]) == ["a", "b"]
        assert np.isfinite(table["drop"]).all()
        result = concordance_index_ci(model, X, y, n_bootstrap=20, random_state=0)
        assert result.estimate == pytest.approx(model.score(X, y))


def _outcome(function, *args, **kwargs):
    """What a call gives (its tuple, or its error's type and message) and its warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = ("returned", function(*args, **kwargs))
        except Exception as error:
            result = ("raised", type(error), str(error))
    return result, [(w.category, str(w.message)) for w in caught]


def assert_same_as_sksurv(event, time, risk, **kwargs):
    """Ours gives what scikit-survival gives: equal counts and C, types, errors, warnings."""
    ours, our_warnings = _outcome(metrics.concordance_index_censored, event, time, risk, **kwargs)
    theirs, their_warnings = _outcome(concordance_index_censored, event, time, risk, **kwargs)
    assert our_warnings == their_warnings
    assert ours[0] == theirs[0], (ours, theirs)
    if theirs[0] == "raised":
        assert ours == theirs
        return
    ours, theirs = ours[1], theirs[1]
    assert [type(value) for value in ours] == [type(value) for value in theirs]
    np.testing.assert_array_equal(ours[0], theirs[0])  # bit for bit, NaN included
    assert ours[1:] == theirs[1:]


@st.composite
def tied_survival_data(draw):
    """Small cohorts drawn from few distinct times and risks: ties of every kind."""
    n = draw(st.integers(min_value=1, max_value=60))
    rng = np.random.default_rng(draw(st.integers(min_value=0, max_value=2**32 - 1)))
    n_times = draw(st.integers(min_value=1, max_value=12))
    time = rng.integers(0, n_times, size=n).astype(draw(st.sampled_from([np.float64, np.int64])))
    event = rng.random(n) < draw(st.floats(min_value=0.0, max_value=1.0))
    n_risks = draw(st.integers(min_value=1, max_value=40))
    level = rng.integers(0, n_risks, size=n)
    risk = {
        "integers": level.astype(np.float64),
        "int64": level,
        "float32": (level / 3).astype(np.float32),
        # steps below, at and above tied_tol: ties that are not transitive
        "within tol": level * draw(st.sampled_from([0.3e-8, 0.6e-8, 1e-8, 1.5e-8])),
        "normal": rng.normal(size=n),
    }[draw(st.sampled_from(["integers", "int64", "float32", "within tol", "normal"]))]
    tied_tol = draw(st.sampled_from([1e-8, 0.0, 0.5, 1.0, 2.5, 12.0, -1.0, float("nan")]))
    return event, time, risk, tied_tol


class TestConcordanceIndexCensored:
    @settings(max_examples=600, deadline=None)
    @given(tied_survival_data())
    def test_equals_sksurv_on_heavily_tied_data(self, data):
        event, time, risk, tied_tol = data
        assert_same_as_sksurv(event, time, risk, tied_tol=tied_tol)

    @pytest.mark.parametrize("steps", [0, 1])
    @settings(max_examples=200, deadline=None)
    @given(data=tied_survival_data())
    def test_equals_sksurv_when_risk_windows_are_bisected(self, steps, data):
        # with few single steps, the windows of tied risks are found by bisection
        event, time, risk, tied_tol = data
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(metrics, "_WINDOW_STEPS", steps)
            assert_same_as_sksurv(event, time, risk, tied_tol=tied_tol)

    @pytest.mark.parametrize("seed", range(3))
    def test_equals_sksurv_on_a_larger_cohort(self, seed):
        # thousands of distinct risks: a dozen bits of rank in the wavelet matrix
        rng = np.random.default_rng(seed)
        risk = rng.normal(size=3000)
        time = np.ceil(rng.exponential(200 * np.exp(-risk)))
        event = rng.random(3000) < 0.6
        assert_same_as_sksurv(event, time, risk.astype(np.float32))
        assert_same_as_sksurv(event, time, np.round(risk, 1), tied_tol=0.15)

    @pytest.mark.parametrize(
        ("event", "time", "risk", "tied_tol"),
        [
            pytest.param([1, 0, 1, 1, 0], [1, 2, 2, 3, 4], [0.5] * 5, 1e-8, id="all risks tied"),
            pytest.param([0, 0, 1, 0, 0], [1, 2, 2, 3, 4], [3, 1, 2, 5, 0], 1e-8, id="one event"),
            pytest.param(
                [1, 1, 0, 0, 1], [2, 2, 2, 2, 5], [1, 3, 2, 3, 0], 1e-8, id="censored at event time"
            ),
            pytest.param(
                [1, 1, 1, 0, 1, 0],
                [1, 2, 3, 4, 5, 6],
                [1.2e-8, 0.6e-8, 0.0, 1.2e-8, 0.6e-8, 0.0],
                1e-8,
                id="risks within tied_tol, not transitively",
            ),
            pytest.param([0, 1, 1], [1, 2, 3], [1, 2, 3], 1e-8, id="last event alone at its time"),
            pytest.param([1, 1, 0], [1, 2, 2], [1, 2, 3], 1e-8, id="last time shared"),
            pytest.param([1, 1, 1], [4, 4, 4], [1, 2, 3], 1e-8, id="events at one time: 0 / 0"),
            pytest.param([1, 0, 1], [1, 2, 3], [0.0, -0.0, 0.0], 0.0, id="signed zeros"),
            pytest.param([1, 0, 1], [1, 2, 3], [2, 1, 2], -1.0, id="negative tolerance"),
            pytest.param([1, 1, 0], [1, 2, 3], [True, False, True], 1e-8, id="bool risks"),
            pytest.param([1, 0, 1, 0], [3, 1, 2, 2], [4, 4, 1, 9], 1e-8, id="unsorted times"),
        ],
    )
    def test_edge_cases_as_sksurv(self, event, time, risk, tied_tol):
        event = np.asarray(event, dtype=bool)
        assert_same_as_sksurv(event, np.asarray(time), np.asarray(risk), tied_tol=tied_tol)

    @pytest.mark.parametrize(
        ("event", "time", "risk"),
        [
            pytest.param([True, False], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], id="lengths differ"),
            pytest.param([1, 0, 1], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], id="integer events"),
            pytest.param([True], [1.0], [1.0], id="one sample"),
            pytest.param([False, False], [1.0, 2.0], [1.0, 2.0], id="all censored"),
            pytest.param([True, False], [1.0, np.nan], [1.0, 2.0], id="NaN time"),
            pytest.param([True, False], [1.0, 2.0], [np.inf, 2.0], id="infinite risk"),
            pytest.param([True, False], [1.0, 2.0], [[1.0], [2.0]], id="2-D risk"),
            pytest.param([True, False], [1.0, 2.0], ["a", "b"], id="text risk"),
            pytest.param([False, True], [1.0, 2.0], [1.0, 2.0], id="no comparable pair"),
            pytest.param([True, False], [1.0, 2.0], [2.0, 1.0], id="lists"),
        ],
    )
    def test_validation_as_sksurv(self, event, time, risk):
        assert_same_as_sksurv(event, time, risk)

    @pytest.mark.parametrize("n", [2, 100_001])
    def test_counts_past_int32(self, n):
        # distinct times, every patient an event: every pair is comparable, n (n - 1) / 2
        # of them (5e9 > 2**31 for the larger n)
        event = np.ones(n, dtype=bool)
        time = np.arange(n, dtype=np.float64)
        pairs = n * (n - 1) // 2
        riskier_earlier = metrics.concordance_index_censored(event, time, -time)
        assert riskier_earlier == (1.0, pairs, 0, 0, 0)
        assert metrics.concordance_index_censored(event, time, time) == (0.0, 0, pairs, 0, 0)
        assert metrics.concordance_index_censored(event, time, 0 * time) == (0.5, 0, 0, pairs, 0)
        assert all(type(count) is np.int64 for count in riskier_earlier[1:])

    def test_tuple_equals_sksurvs_on_every_resample_size(self):
        # the dispatch: sksurv below the threshold, ours above, the same tuple either way
        X, y = simulate(200, seed=3)
        event, time = y["status"], y["days"]
        for n in (5, 40, 200):
            expected = concordance_index_censored(event[:n], time[:n], X[:n, 0])
            assert metrics._concordance_index(event[:n], time[:n], X[:n, 0]) == expected


@pytest.fixture(scope="module")
def fitted_fusion():
    X, y = make_multimodal_survival(80, {"a": 4, "b": 4}, random_state=0)
    model = M4SurvivalEstimator(
        d_model=8, encoder_hidden=16, n_layers=1, max_epochs=2, batch_size=None, random_state=0
    ).fit(X, y)
    return model, X, y


class TestScore:
    @staticmethod
    def _spy(monkeypatch, name, calls):
        """Record the calls of ``metrics.<name>`` and let them through."""
        function = getattr(metrics, name)

        def spy(event, *args, **kwargs):
            calls.append(len(event))
            return function(event, *args, **kwargs)

        monkeypatch.setattr(metrics, name, spy)

    def test_above_the_threshold_uses_ours_and_equals_sksurv(self, fitted_fusion, monkeypatch):
        model, X, y = fitted_fusion
        event, time = y[y.dtype.names[0]], y[y.dtype.names[1]]
        expected = concordance_index_censored(event, time, model.predict(X))[0]
        ours, theirs = [], []
        self._spy(monkeypatch, "concordance_index_censored", ours)
        self._spy(monkeypatch, "_quadratic_concordance_index", theirs)
        monkeypatch.setattr(metrics, "_SKSURV_MAX_EVENTS", 0)
        assert model.score(X, y) == expected
        assert (ours, theirs) == ([len(y)], [])

    def test_below_the_threshold_uses_sksurvs(self, fitted_fusion, monkeypatch):
        model, X, y = fitted_fusion
        event, time = y[y.dtype.names[0]], y[y.dtype.names[1]]
        expected = concordance_index_censored(event, time, model.predict(X))[0]
        ours, theirs = [], []
        self._spy(monkeypatch, "concordance_index_censored", ours)
        self._spy(monkeypatch, "_quadratic_concordance_index", theirs)
        monkeypatch.setattr(metrics, "_SKSURV_MAX_EVENTS", len(y))
        assert model.score(X, y) == expected
        assert (ours, theirs) == ([], [len(y)])
