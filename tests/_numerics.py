"""Float comparisons whose tolerance follows the scale of the compared values.

Two computations of one quantity by different kernels (another SIMD width, BLAS blocking,
a fused against an unfused path, a subset against the whole batch) round differently: the
difference grows with the largest magnitude involved, not with each element. Comparing
every element against a tolerance relative to that magnitude passes on any CPU, and still
fails for a wrong formula or gradient, which is off by a sizeable share of the scale.
"""

import numpy as np
import torch

# Share of the largest expected magnitude that two roundings of one computation may differ
# by: about 170 units in the last place for float32, far below any formula error.
REL_TO_SCALE = {torch.float32: 2e-5, torch.float64: 1e-11}


def assert_close_to_scale(actual, expected, *, rel=None, scale=None, msg=None):
    """Assert ``|actual - expected| <= rel * scale`` elementwise.

    ``scale`` defaults to ``max|expected|`` (1 when every expected value is zero): pass
    the scale of a larger computation that ``expected`` is part of, such as all the
    parameters of a network. ``rel`` defaults to :data:`REL_TO_SCALE` of the less
    precise dtype of the two.
    """
    actual, expected = torch.as_tensor(actual), torch.as_tensor(expected)
    if rel is None:
        dtype = torch.promote_types(actual.dtype, expected.dtype)
        if torch.float32 in (actual.dtype, expected.dtype):
            dtype = torch.float32
        rel = REL_TO_SCALE[dtype]
    if scale is None:
        scale = expected.detach().abs().max().item() if expected.numel() else 0.0
    atol = rel * (scale if scale > 0 else 1.0)
    torch.testing.assert_close(
        actual.detach().double(),
        expected.detach().double(),
        rtol=0,
        atol=atol,
        msg=msg,
        check_dtype=False,
    )


def scale_of(values) -> float:
    """Largest magnitude in ``values`` (for hand-written bounds)."""
    return float(np.max(np.abs(np.asarray(values)))) if np.size(values) else 0.0
