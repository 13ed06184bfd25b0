import doctest

import numpy as np
import pandas as pd
import pytest
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
        c_masked = concordance_index_censored(event, time, model.predict(masked))[0]
        row = table.set_index("modality").loc["noise"]
        assert row["c_index_masked"] == pytest.approx(c_masked)
        assert row["drop"] == pytest.approx(expected - c_masked)
        assert row["drop_low"] <= row["drop"] <= row["drop_high"]

    def test_rows_with_only_that_modality_stay_unmasked(self, signal_and_noise):
        model, X, y = signal_and_noise
        X = X.copy()
        noise_columns = [c for c in X.columns if c.startswith("noise__")]
        X.loc[X.index[:30], noise_columns] = np.nan
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
