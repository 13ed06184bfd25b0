"""Cox partial likelihood in PyTorch."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["CoxPartialLikelihoodLoss", "cox_partial_likelihood"]

_TIES = ("efron", "breslow")
# Up to this many samples the pairwise form is used: measured faster than the sorted one
# up to 64 samples with Efron's ties (and 128 with Breslow's), slower beyond.
_DENSE_MAX_SAMPLES = 64


def cox_partial_likelihood(
    log_risk: Tensor, time: Tensor, event: Tensor, ties: str = "efron"
) -> Tensor:
    r"""Negative log partial likelihood of the Cox model, averaged over events.

    With :math:`\eta_i` the log-risk of sample :math:`i`, :math:`D_k` the set
    of the :math:`d_k` events at the :math:`k`-th distinct event time and
    :math:`R_k` its risk set (every sample whose time is at least that time),

    .. math::

        \ell = -\frac{1}{\sum_k d_k} \sum_k \Big[ \sum_{i \in D_k} \eta_i
               - \sum_{l=0}^{d_k - 1} \log\Big( \sum_{j \in R_k} e^{\eta_j}
               - \frac{l}{d_k} \sum_{j \in D_k} e^{\eta_j} \Big) \Big]

    for Efron's approximation [1]_; Breslow's [2]_ drops the second term
    inside the logarithm. Both are exact over the whole risk set of the batch.

    The computation sorts once and uses a cumulative log-sum-exp, so it costs
    :math:`O(n \log n)` time and :math:`O(n)` memory, and it stays finite for
    log-risks of any magnitude. Batches of up to 64 samples, where the count
    of tensor operations rather than arithmetic sets the cost, use an equal
    pairwise form with fewer operations.

    Parameters
    ----------
    log_risk : Tensor of shape (n_samples,) or (n_samples, 1)
        Predicted log-hazard ratios.
    time : Tensor of shape (n_samples,)
        Observed times.
    event : Tensor of shape (n_samples,)
        Event indicator (bool, or 0/1).
    ties : {"efron", "breslow"}, default="efron"
        Handling of tied event times.

    Returns
    -------
    loss : Tensor of shape ()
        The mean negative log partial likelihood over events; ``0`` (with a
        gradient of zeros) for a batch without events.

    References
    ----------
    .. [1] Efron, B. (1977). The efficiency of Cox's likelihood function for
       censored data. JASA, 72(359), 557-565.
    .. [2] Breslow, N. (1974). Covariance analysis of censored survival data.
       Biometrics, 30(1), 89-99.

    Examples
    --------
    >>> import torch
    >>> from sksurvfusion.losses import cox_partial_likelihood
    >>> log_risk = torch.tensor([0.5, -0.2, 0.1, 0.0])
    >>> time = torch.tensor([1.0, 2.0, 2.0, 3.0])
    >>> event = torch.tensor([True, True, True, False])
    >>> round(cox_partial_likelihood(log_risk, time, event).item(), 4)
    0.9556
    """
    if ties not in _TIES:
        raise ValueError(f"ties must be one of {_TIES}, got {ties!r}")
    log_risk = log_risk.reshape(-1)
    time = time.reshape(-1).to(log_risk.device)
    event = event.reshape(-1).to(device=log_risk.device, dtype=torch.bool)
    if not (log_risk.shape == time.shape == event.shape):
        raise ValueError(
            "log_risk, time and event must have the same number of samples, got "
            f"{log_risk.numel()}, {time.numel()} and {event.numel()}"
        )
    if log_risk.shape[0] <= _DENSE_MAX_SAMPLES:
        return _dense_partial_likelihood(log_risk, time, event, ties)
    n_events = event.sum()
    if n_events == 0:
        # keeps the graph connected so callers can always call backward()
        return log_risk.sum() * 0.0

    order = torch.argsort(time, descending=True, stable=True)
    eta = log_risk[order]
    event = event[order]
    _, group, counts = torch.unique_consecutive(
        time[order], return_inverse=True, return_counts=True
    )
    group_end = torch.cumsum(counts, 0) - 1

    # log of the risk-set sum at each distinct time: everything up to the last tied sample
    log_risk_set = torch.logcumsumexp(eta, 0)[group_end][group]
    eta_events = eta[event]
    log_denominator = log_risk_set[event]

    if ties == "efron":
        group_events = group[event]
        n_groups = counts.shape[0]
        # log of the sum of exp(eta) over the events of each tie group, shifted by the max
        group_max = torch.full((n_groups,), -torch.inf, dtype=eta.dtype, device=eta.device)
        group_max = group_max.scatter_reduce(0, group_events, eta_events.detach(), "amax")
        shifted = torch.exp(eta_events - group_max[group_events])
        group_sum = torch.zeros(n_groups, dtype=eta.dtype, device=eta.device)
        log_tied = group_max + torch.log(group_sum.index_add(0, group_events, shifted))

        # rank l of each event among the d events of its group, and d itself
        cum_events = torch.cumsum(event.to(torch.long), 0)
        before = cum_events - event.to(torch.long)
        group_start = group_end - counts + 1
        rank = (before - before[group_start][group])[event]
        n_tied = (cum_events[group_end] - before[group_start])[group_events]

        fraction = rank.to(eta.dtype) / n_tied.to(eta.dtype)
        ratio = torch.exp(log_tied[group_events] - log_denominator)
        # fraction * ratio <= (d - 1) / d, so the argument of log1p stays above -1
        log_denominator = log_denominator + torch.log1p(-fraction * ratio)

    return (log_denominator - eta_events).sum() / n_events.to(eta.dtype)


def _dense_partial_likelihood(eta: Tensor, time: Tensor, event: Tensor, ties: str) -> Tensor:
    """The same loss from pairwise comparisons: O(n^2), but fewer operations.

    Minibatches are small, and at their size the cost of the sorted form is the count of
    tensor operations, not arithmetic. On a GPU it is free of data-dependent branches, so
    it never waits for the device.
    """
    # at_risk[i, j]: sample j is in the risk set of sample i.
    at_risk = time.unsqueeze(0) >= time.unsqueeze(1)
    log_denominator = torch.logsumexp(eta.masked_fill(~at_risk, -torch.inf), dim=1)
    if ties == "efron":
        # tied[i, j]: j is an event at i's time; every row also holds i itself, so that the
        # log-sum-exp below is finite (rows of censored samples are not used).
        tied = (time.unsqueeze(0) == time.unsqueeze(1)) & event.unsqueeze(0)
        n_tied = tied.sum(1).clamp_min_(1)
        # Without tied events Efron's correction is zero. On the CPU, where checking is
        # free, its twenty-odd operations are then skipped.
        if eta.device.type != "cpu" or bool((n_tied > 1).any()):
            log_denominator = _dense_efron(eta, event, tied, n_tied, log_denominator)
    terms = torch.where(event, log_denominator - eta, 0.0)
    # a batch without events gives 0, with a gradient of zeros
    return terms.sum() / event.sum().clamp_min(1).to(eta.dtype)


def _dense_efron(
    eta: Tensor, event: Tensor, tied: Tensor, n_tied: Tensor, log_denominator: Tensor
) -> Tensor:
    """Efron's log-denominators from Breslow's, pairwise; ``tied`` is modified."""
    # rank of each event among the tied events before it: 0, 1, ..., d - 1; zero for
    # censored samples, whose terms are dropped but must keep a finite gradient
    rank = tied.tril(-1).sum(1).mul_(event)
    tied.diagonal().fill_(True)
    log_tied = torch.logsumexp(eta.masked_fill(~tied, -torch.inf), dim=1)
    # rank / d * ratio <= (d - 1) / d, so the argument of log1p stays above -1
    fraction = rank.to(eta.dtype) / n_tied.to(eta.dtype)
    return log_denominator + torch.log1p(-fraction * torch.exp(log_tied - log_denominator))


class CoxPartialLikelihoodLoss(nn.Module):
    """Cox partial likelihood as a module, usable as a skorch criterion.

    Parameters
    ----------
    ties : {"efron", "breslow"}, default="efron"
        Handling of tied event times.

    Notes
    -----
    ``forward(log_risk, target)`` takes ``target`` of shape (n_samples, 2)
    holding the event indicator in column 0 and the time in column 1, the
    field order of scikit-survival's structured arrays.

    See Also
    --------
    cox_partial_likelihood : The functional form.

    Examples
    --------
    >>> import torch
    >>> from sksurvfusion.losses import CoxPartialLikelihoodLoss, cox_partial_likelihood
    >>> log_risk = torch.tensor([0.5, -0.2, 0.1, 0.0])
    >>> target = torch.tensor([[1.0, 1.0], [1.0, 2.0], [1.0, 2.0], [0.0, 3.0]])
    >>> loss = CoxPartialLikelihoodLoss()(log_risk, target)
    >>> bool(loss == cox_partial_likelihood(log_risk, target[:, 1], target[:, 0]))
    True
    """

    def __init__(self, ties: str = "efron") -> None:
        super().__init__()
        if ties not in _TIES:
            raise ValueError(f"ties must be one of {_TIES}, got {ties!r}")
        self.ties = ties

    def forward(self, log_risk: Tensor, target: Tensor) -> Tensor:
        return cox_partial_likelihood(log_risk, target[:, 1], target[:, 0], ties=self.ties)

    def extra_repr(self) -> str:
        return f"ties={self.ties!r}"
