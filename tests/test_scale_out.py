"""Grid searches spread over processes give the scores of a search run here.

A search on a ``dask.distributed`` cluster pickles the estimator, fits it in another
process and sends the scores back; with an integer ``random_state`` every fit draws from
its own generator, so the scores must equal those of the same search run sequentially.
"""

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV, KFold

from sksurvfusion import M4SurvivalEstimator
from sksurvfusion.datasets import make_multimodal_survival

distributed = pytest.importorskip("distributed")
joblib = pytest.importorskip("joblib")


@pytest.fixture(scope="module")
def data():
    return make_multimodal_survival(
        120, modalities={"mri": 8, "pathology": 6}, n_latent=3, random_state=0
    )


def _search():
    estimator = M4SurvivalEstimator(
        d_model=8, encoder_hidden=16, d_state=4, n_layers=1, max_epochs=3, random_state=0
    )
    grid = {"adapter": ["mamba", "mlp"], "lr": [1e-3, 3e-3]}
    return GridSearchCV(estimator, grid, cv=KFold(3, shuffle=True, random_state=0))


def test_grid_search_on_a_local_cluster_equals_the_local_search(data):
    X, y = data
    local = _search().fit(X, y)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        with distributed.get_task_stream(client) as tasks, joblib.parallel_backend("dask"):
            remote = _search().fit(X, y)
    # the 4 x 3 fits ran as tasks of the two workers, not here
    workers = {task["worker"] for task in tasks.data}
    assert len(tasks.data) >= 12 and len(workers) == 2
    for key in ("mean_test_score", "split0_test_score", "split2_test_score"):
        np.testing.assert_array_equal(remote.cv_results_[key], local.cv_results_[key])
    assert remote.best_params_ == local.best_params_
    np.testing.assert_array_equal(remote.predict(X), local.predict(X))
