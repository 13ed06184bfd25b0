import matplotlib
import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _seeded_and_single_threaded_blas():
    # Multi-threaded BLAS on small matrices costs more than it saves, and far more on a
    # busy machine; seeds are fixed here so tests need not fix their own.
    np.random.seed(0)  # noqa: NPY002 - code under test may draw from the global RNG
    torch.manual_seed(0)
    with threadpool_limits(limits=1, user_api="blas"):
        yield
