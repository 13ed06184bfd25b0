import doctest

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sksurv.compare import compare_survival
from sksurv.util import Surv

from sksurvfusion import plotting
from sksurvfusion.baselines import make_cox_baseline
from sksurvfusion.datasets import load_breast_cancer, make_multimodal_survival
from sksurvfusion.estimator import M4SurvivalEstimator
from sksurvfusion.model_selection import SurvivalStratifiedKFold, ablation_table
from sksurvfusion.plotting import plot_ablation, plot_risk_groups, plot_survival_curves


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


class CoxWithRiskGroups:
    """A fitted Cox pipeline with risk groups cut at its training tertiles."""

    def __init__(self, X, y):
        self.model = make_cox_baseline().fit(X, y)
        self.risk_cutpoints_ = np.percentile(self.model.predict(X), [100 / 3, 200 / 3])

    def predict(self, X):
        return self.model.predict(X)

    def predict_risk_group(self, X):
        return np.digitize(self.predict(X), self.risk_cutpoints_)


@pytest.fixture(scope="module")
def breast_cancer():
    return load_breast_cancer()


@pytest.fixture(scope="module")
def cox(breast_cancer):
    X, y = breast_cancer
    return make_cox_baseline().fit(X, y)


def curves(ax):
    return [line for line in ax.get_lines() if not line.get_label().startswith("_")]


def test_docstring_examples():
    result = doctest.testmod(plotting, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


class TestPlotRiskGroups:
    def test_three_curves_bands_at_risk_and_log_rank_p(self, breast_cancer):
        X, y = breast_cancer
        model = CoxWithRiskGroups(X[:130], y[:130])
        X_test, y_test = X[130:], y[130:]
        fig, ax = plt.subplots()
        assert plot_risk_groups(model, X_test, y_test, ax=ax) is ax

        groups = model.predict_risk_group(X_test)
        sizes = np.bincount(groups, minlength=3)
        labels = [line.get_label() for line in curves(ax)]
        assert labels == [
            f"Low risk (n={sizes[0]})",
            f"Intermediate risk (n={sizes[1]})",
            f"High risk (n={sizes[2]})",
        ]
        assert all(line.get_drawstyle() == "steps-post" for line in curves(ax))
        assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 3

        pvalue = compare_survival(y_test, groups)[1]
        title = ax.get_legend().get_title().get_text()
        assert title == f"log-rank p = {pvalue:.3g}"
        assert float(title.split("= ")[1]) == pytest.approx(pvalue, rel=5e-3)

        at_risk = [t for t in ax.texts if t.get_gid() == "at-risk"]
        ticks = ax.get_xticks()
        assert len(at_risk) == 3 * len(ticks)
        # first column, at time 0, holds the group sizes
        at_zero = [int(t.get_text()) for t in at_risk if t.get_position()[0] == 0]
        assert at_zero == sizes.tolist()
        fig.canvas.draw()

    @pytest.mark.parametrize("figure", ["own", "constrained-pair"])
    def test_at_risk_table_inside_the_figure(self, breast_cancer, figure):
        X, y = breast_cancer
        model = CoxWithRiskGroups(X, y)
        if figure == "own":
            ax = plot_risk_groups(model, X, y)
            FigureCanvasAgg(ax.figure)
        else:  # the layout of examples/plot_risk_groups.py
            _, (ax, _) = plt.subplots(1, 2, figsize=(12, 5), layout="constrained")
            plot_risk_groups(model, X, y, ax=ax)
        ax.figure.canvas.draw()
        renderer, box = ax.figure.canvas.get_renderer(), ax.figure.bbox
        texts = [t for t in ax.texts if t.get_text()]
        assert len(texts) == 1 + 3 + 3 * len(ax.get_xticks())
        for text in texts:
            extent = text.get_window_extent(renderer)
            assert box.x0 <= extent.x0 and extent.x1 <= box.x1, text.get_text()
            assert box.y0 <= extent.y0 and extent.y1 <= box.y1, text.get_text()
            # below the x axis label
            assert extent.y1 < ax.xaxis.label.get_window_extent(renderer).y0

    def test_curves_start_at_one_and_stay_within_the_bands(self, breast_cancer):
        X, y = breast_cancer
        ax = plot_risk_groups(CoxWithRiskGroups(X, y), X, y)
        for line in curves(ax):
            assert line.get_xdata()[0] == 0
            assert line.get_ydata()[0] == 1
            assert np.all(np.diff(line.get_ydata()) <= 0)

    def test_model_without_risk_groups_uses_percentiles_of_its_risks(self, breast_cancer, cox):
        X, y = breast_cancer
        risk = cox.predict(X)
        counts = np.bincount(np.digitize(risk, np.percentile(risk, [33, 66])), minlength=3)
        ax = plot_risk_groups(cox, X, y)
        assert [line.get_label() for line in curves(ax)] == [
            f"{name} risk (n={n})"
            for name, n in zip(["Low", "Intermediate", "High"], counts, strict=True)
        ]

    def test_pipeline_ending_in_the_fusion_model_uses_its_training_cut_points(self):
        X, y = make_multimodal_survival(120, modalities={"a": 6, "b": 6}, random_state=0)
        pipe = make_pipeline(
            StandardScaler().set_output(transform="pandas"),
            M4SurvivalEstimator(d_model=8, max_epochs=2, random_state=0),
        ).fit(X[:80], y[:80])
        expected = np.bincount(
            np.digitize(pipe.predict(X[80:]), pipe[-1].risk_cutpoints_), minlength=3
        )
        by_model = np.bincount(pipe[-1].predict_risk_group(pipe[0].transform(X[80:])), minlength=3)
        np.testing.assert_array_equal(expected, by_model)
        ax = plot_risk_groups(pipe, X[80:], y[80:])
        labels = [line.get_label() for line in curves(ax)]
        assert labels == [
            f"{name} risk (n={n})"
            for name, n in zip(["Low", "Intermediate", "High"], expected, strict=True)
            if n > 0
        ]

    def test_a_single_group_has_no_test(self):
        class OneGroup:
            def predict_risk_group(self, X):
                return np.full(len(X), 2)

        y = Surv.from_arrays([True, False, True, True], [1.0, 2.0, 3.0, 4.0])
        ax = plot_risk_groups(OneGroup(), np.zeros((4, 1)), y)
        assert len(curves(ax)) == 1
        assert ax.get_legend().get_title().get_text() == "log-rank p = n/a"

    def test_fusion_estimator(self):
        X, y = make_multimodal_survival(60, {"a": 4, "b": 4}, random_state=0)
        model = M4SurvivalEstimator(
            d_model=8, encoder_hidden=16, n_layers=1, max_epochs=2, batch_size=None, random_state=0
        ).fit(X, y)
        ax = plot_risk_groups(model, X, y)
        assert 1 <= len(curves(ax)) <= 3
        ax = plot_survival_curves(model, X.iloc[:4])
        assert len(curves(ax)) == 4


class TestPlotSurvivalCurves:
    def test_one_curve_per_patient_labelled_by_index(self, breast_cancer, cox):
        X, _ = breast_cancer
        rows = X.iloc[[5, 17, 40]]
        ax = plot_survival_curves(cox, rows)
        lines = curves(ax)
        assert [line.get_label() for line in lines] == ["5", "17", "40"]
        functions = cox.predict_survival_function(rows)
        for line, function in zip(lines, functions, strict=True):
            np.testing.assert_allclose(line.get_ydata()[1:], function(function.x))
        assert ax.get_legend() is not None

    def test_array_input_and_own_labels(self, breast_cancer):
        X, y = breast_cancer
        model = make_cox_baseline({"genes": slice(0, 76), "clinical": slice(76, 81)})
        model.fit(X.to_numpy(), y)
        ax = plot_survival_curves(model, X.to_numpy()[:2])
        assert [line.get_label() for line in curves(ax)] == ["0", "1"]
        _, ax = plt.subplots()
        plot_survival_curves(model, X.to_numpy()[:2], ax=ax, labels=["a", "b"], legend=False)
        assert [line.get_label() for line in curves(ax)] == ["a", "b"]
        assert ax.get_legend() is None
        with pytest.raises(ValueError, match="3 labels for 2 patients"):
            plot_survival_curves(model, X.to_numpy()[:2], labels=["a", "b", "c"])


class TestPlotAblation:
    def test_one_point_per_configuration(self, breast_cancer):
        X, y = breast_cancer
        search = GridSearchCV(
            make_cox_baseline(),
            {"cox__alpha": [1.0, 100.0], "preprocess__n_components": [2, 4]},
            cv=SurvivalStratifiedKFold(2),
        ).fit(X, y)
        table = ablation_table(search)
        _, ax = plt.subplots()
        assert plot_ablation(table, ax=ax) is ax
        (container,) = ax.containers
        points = container.lines[0]
        np.testing.assert_allclose(points.get_xdata(), table["mean_score"])
        np.testing.assert_array_equal(points.get_ydata(), np.arange(4))
        labels = [t.get_text() for t in ax.get_yticklabels()]
        alpha, n_components = table["alpha"].iloc[0], table["n_components"].iloc[0]
        assert labels[0] == f"alpha={alpha}, n_components={n_components}"
        assert len(set(labels)) == 4

    def test_named_score_of_a_multi_metric_table(self):
        table = pd.DataFrame(
            {
                "adapter": ["mamba", "mlp", "transformer"],
                "mean_uno": [0.6, 0.62, 0.58],
                "sd_uno": [0.01, 0.02, 0.03],
                "mean_harrell": [0.7, 0.66, 0.65],
                "sd_harrell": [0.01, 0.02, 0.03],
            }
        )
        ax = plot_ablation(table, score="harrell")
        np.testing.assert_allclose(ax.containers[0].lines[0].get_xdata(), [0.7, 0.66, 0.65])
        with pytest.raises(ValueError, match="mean_c"):
            plot_ablation(table, score="c")
