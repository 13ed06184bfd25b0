import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lifelines import CoxPHFitter
from torchsurv.loss.cox import neg_partial_log_likelihood

from sksurvfusion import losses
from sksurvfusion.losses import CoxPartialLikelihoodLoss, cox_partial_likelihood


@pytest.fixture(autouse=True, scope="module", params=["pairwise", "sorted"])
def form(request):
    """Every test runs on both forms of the loss: pairwise (small batches) and sorted."""
    limit = 10**9 if request.param == "pairwise" else 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(losses, "_DENSE_MAX_SAMPLES", limit)
        yield request.param


@st.composite
def tied_survival_batches(draw, censored_offset=0.0):
    """Small batches with many tied times and at least one event."""
    n = draw(st.integers(min_value=2, max_value=40))  # torchsurv needs two samples
    n_distinct = draw(st.integers(min_value=1, max_value=6))
    seed = draw(st.integers(min_value=0, max_value=2**31 - 1))
    rng = np.random.default_rng(seed)
    time = rng.integers(1, n_distinct + 1, size=n).astype(np.float64)
    event = rng.random(n) < draw(st.floats(min_value=0.2, max_value=1.0))
    event[rng.integers(n)] = True
    time[~event] += censored_offset
    log_risk = rng.normal(scale=draw(st.floats(min_value=0.1, max_value=5.0)), size=n)
    return torch.from_numpy(log_risk), torch.from_numpy(time), torch.from_numpy(event)


def naive_partial_likelihood(log_risk, time, event, ties):
    """Term by term over the distinct event times, straight from the definition."""
    eta, time, event = log_risk.numpy(), time.numpy(), event.numpy()
    total = 0.0
    for t in np.unique(time[event]):
        tied = event & (time == t)
        at_risk = np.exp(eta[time >= t]).sum()
        tied_sum = np.exp(eta[tied]).sum()
        d = tied.sum()
        fractions = np.arange(d) / d if ties == "efron" else np.zeros(d)
        total += eta[tied].sum() - np.log(at_risk - fractions * tied_sum).sum()
    return -total / event.sum()


def torchsurv_mean_over_events(log_risk, time, event, ties):
    with warnings.catch_warnings():
        # torchsurv announces every tie it sees; the ties are the point here
        warnings.filterwarnings("ignore", message="Ties in `time` detected")
        total = neg_partial_log_likelihood(log_risk, event, time, ties_method=ties, reduction="sum")
    return total / event.sum()


@pytest.mark.parametrize("ties", ["efron", "breslow"])
@settings(max_examples=150, deadline=None)
@given(batch=tied_survival_batches())
def test_matches_the_definition(batch, ties):
    log_risk, time, event = batch
    expected = naive_partial_likelihood(log_risk, time, event, ties)
    log_risk = log_risk.clone().requires_grad_()
    ours = cox_partial_likelihood(log_risk, time, event, ties=ties)
    np.testing.assert_allclose(ours.item(), expected, rtol=1e-10, atol=1e-12)
    # the gradient sums to zero (the loss ignores a common shift) and is finite
    (grad,) = torch.autograd.grad(ours, log_risk)
    assert torch.isfinite(grad).all()
    np.testing.assert_allclose(grad.sum().item(), 0.0, atol=1e-10)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
@settings(max_examples=150, deadline=None)
# torchsurv 0.2 orders samples of equal time arbitrarily when no two events tie, which
# puts an event before a censored sample of the same time outside its risk set; censored
# times half a unit later keep the events' heavy ties and avoid that case (the
# definition test above and the lifelines test cover it).
@given(batch=tied_survival_batches(censored_offset=0.5))
def test_matches_torchsurv(batch, ties):
    log_risk, time, event = batch
    ours = cox_partial_likelihood(log_risk, time, event, ties=ties)
    expected = torchsurv_mean_over_events(log_risk, time, event, ties)
    # torchsurv returns float32 whatever the input, hence the absolute slack of float32 rounding
    torch.testing.assert_close(ours, expected.to(ours.dtype), rtol=1e-6, atol=2e-6)


def test_efron_and_breslow_agree_without_ties():
    rng = np.random.default_rng(3)
    time = torch.from_numpy(rng.permutation(30).astype(np.float64) + 1)
    event = torch.from_numpy(rng.random(30) < 0.7)
    log_risk = torch.from_numpy(rng.normal(size=30))
    efron = cox_partial_likelihood(log_risk, time, event, ties="efron")
    breslow = cox_partial_likelihood(log_risk, time, event, ties="breslow")
    torch.testing.assert_close(efron, breslow)


def test_matches_lifelines_log_likelihood():
    rng = np.random.default_rng(0)
    n = 300
    covariates = rng.normal(size=(n, 3))
    hazard = np.exp(covariates @ np.array([0.8, -0.5, 0.3]))
    time = np.ceil(rng.exponential(1.0 / hazard) * 4)  # rounding creates ties
    event = rng.random(n) < 0.7
    frame = pd.DataFrame(covariates, columns=["a", "b", "c"]).assign(time=time, event=event)
    fitter = CoxPHFitter().fit(frame, duration_col="time", event_col="event")

    log_risk = torch.from_numpy(covariates @ fitter.params_.to_numpy())
    loss = cox_partial_likelihood(log_risk, torch.from_numpy(time), torch.from_numpy(event))
    np.testing.assert_allclose(-loss.item() * event.sum(), fitter.log_likelihood_, rtol=1e-8)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_gradcheck(ties):
    rng = np.random.default_rng(1)
    time = torch.from_numpy(rng.integers(1, 5, size=12).astype(np.float64))
    event = torch.from_numpy(rng.random(12) < 0.6)
    event[0] = True
    log_risk = torch.from_numpy(rng.normal(size=12)).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda r: cox_partial_likelihood(r, time, event, ties=ties), (log_risk,)
    )


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_batch_without_events_is_zero_with_gradient(ties):
    log_risk = torch.randn(8, requires_grad=True)
    loss = cox_partial_likelihood(log_risk, torch.arange(8.0), torch.zeros(8, dtype=bool), ties)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(log_risk.grad, torch.zeros(8))


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_censored_sample_tied_with_the_last_events(ties):
    # The risk set at the last time holds the events there and one censored sample.
    log_risk = torch.tensor([0.3, -0.2, 0.5, 0.1], dtype=torch.float64, requires_grad=True)
    time = torch.tensor([1.0, 2.0, 2.0, 2.0], dtype=torch.float64)
    event = torch.tensor([True, True, True, False])
    loss = cox_partial_likelihood(log_risk, time, event, ties=ties)
    (grad,) = torch.autograd.grad(loss, log_risk)
    expected = naive_partial_likelihood(log_risk.detach(), time, event, ties)
    torch.testing.assert_close(loss.item(), expected, rtol=1e-12, atol=0)
    assert torch.isfinite(grad).all()
    assert torch.autograd.gradcheck(
        lambda r: cox_partial_likelihood(r, time, event, ties=ties), (log_risk,)
    )


@pytest.mark.parametrize("event", [True, False])
def test_single_sample(event):
    log_risk = torch.tensor([1.7], requires_grad=True)
    loss = cox_partial_likelihood(log_risk, torch.tensor([2.0]), torch.tensor([event]))
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-7)
    assert torch.isfinite(log_risk.grad).all()


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_extreme_log_risks_stay_finite(ties):
    rng = np.random.default_rng(2)
    log_risk = torch.from_numpy(rng.choice([-50.0, 50.0], size=64)).float().requires_grad_()
    time = torch.from_numpy(rng.integers(1, 4, size=64)).float()
    event = torch.from_numpy(rng.random(64) < 0.5)
    loss = cox_partial_likelihood(log_risk, time, event, ties=ties)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(log_risk.grad).all()
    reference = cox_partial_likelihood(log_risk.double(), time.double(), event, ties=ties)
    torch.testing.assert_close(loss.double(), reference, rtol=1e-5, atol=1e-5)


def test_shift_invariance_and_column_vector_input():
    rng = np.random.default_rng(4)
    log_risk = torch.from_numpy(rng.normal(size=(20, 1)))
    time = torch.from_numpy(rng.integers(1, 6, size=20).astype(np.float64))
    event = torch.from_numpy(rng.random(20) < 0.5)
    event[0] = True
    base = cox_partial_likelihood(log_risk, time, event)
    torch.testing.assert_close(cox_partial_likelihood(log_risk + 10.0, time, event), base)


def test_module_reads_event_then_time():
    rng = np.random.default_rng(5)
    log_risk = torch.from_numpy(rng.normal(size=15))
    time = torch.from_numpy(rng.integers(1, 6, size=15).astype(np.float64))
    event = torch.from_numpy(rng.random(15) < 0.6)
    event[0] = True
    target = torch.stack([event.double(), time], dim=1)
    loss = CoxPartialLikelihoodLoss(ties="breslow")(log_risk, target)
    torch.testing.assert_close(loss, cox_partial_likelihood(log_risk, time, event, "breslow"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ties": "exact"}, "ties must be one of"),
        ({"time": torch.ones(3)}, "same number of samples"),
    ],
)
def test_invalid_arguments(kwargs, match):
    args = {
        "log_risk": torch.zeros(4),
        "time": torch.ones(4),
        "event": torch.ones(4, dtype=bool),
    } | kwargs
    with pytest.raises(ValueError, match=match):
        cox_partial_likelihood(**args)


def test_pairwise_and_sorted_forms_agree():
    rng = np.random.default_rng(3)
    n = 300
    time = torch.from_numpy(rng.integers(1, 30, size=n).astype(np.float64))
    event = torch.from_numpy(rng.random(n) < 0.6)
    log_risk = torch.from_numpy(rng.normal(scale=2.0, size=n)).requires_grad_()
    for ties in ("efron", "breslow"):
        results = []
        for limit in (10**9, 0):
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(losses, "_DENSE_MAX_SAMPLES", limit)
                loss = cox_partial_likelihood(log_risk, time, event, ties=ties)
                results.append((loss, *torch.autograd.grad(loss, log_risk)))
        (pairwise, grad_pairwise), (sorted_, grad_sorted) = results
        torch.testing.assert_close(pairwise, sorted_, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(grad_pairwise, grad_sorted, rtol=1e-8, atol=1e-12)
