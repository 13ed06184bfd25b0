"""Synthetic multi-modal survival data that looks like foundation-model embeddings."""

from __future__ import annotations

import numbers
import zlib
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from numpy.typing import DTypeLike
from sklearn.utils import check_random_state
from sksurv.util import Surv

__all__ = ["make_multimodal_survival"]

# The M4Survive setting: one MedImageInsight embedding per MRI sequence, one UNI2-h
# embedding of the pathology slide.
_DEFAULT_MODALITIES = {"t1": 1024, "t1pc": 1024, "t2": 1024, "flair": 1024, "pathology": 1536}
_DEFAULT_MODEL_NAMES = {
    "t1": "medimageinsight",
    "t1pc": "medimageinsight",
    "t2": "medimageinsight",
    "flair": "medimageinsight",
    "pathology": "uni2h",
}
# The four MRI sequences image the same tumour, so they share one radiology latent.
_DEFAULT_GROUPS = {"radiology": ["t1", "t1pc", "t2", "flair"], "pathology": ["pathology"]}

# Baseline Weibull scale: a patient with log-hazard 0 and shape 1 has median survival
# 24 * ln 2 ~ 17 time units, the order of glioma survival in months.
_BASELINE_SCALE = 24.0
# Rows generated at once: bounds the float temporaries to a few tens of MB per modality
# so that 100,000 patients at the default widths cost little beyond the output itself.
_CHUNK_ROWS = 4096


def make_multimodal_survival(
    n_samples: int = 200,
    modalities: Mapping[str, int] | None = None,
    *,
    model_names: Mapping[str, str | None] | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
    n_latent: int = 8,
    main_effect: float = 0.75,
    interaction: float = 1.5,
    noise: float = 1.0,
    censoring_rate: float = 0.3,
    missing_rate: float | Mapping[str, float] = 0.0,
    weibull_shape: float = 1.0,
    dtype: DTypeLike = np.float32,
    return_risk: bool = False,
    random_state: int | np.random.RandomState | None = None,
) -> tuple[pd.DataFrame, np.ndarray] | tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    r"""Generate survival data whose hazard depends on an interaction between modalities.

    Each patient has, for every modality group :math:`g` (radiology, pathology, ...), a
    latent vector :math:`u_g \sim \mathcal{N}(0, I_k)` with ``k = n_latent``. The true
    log-hazard uses the first two latent factors of every group: a main effect and a
    product across every pair of groups,

    .. math::

        \eta = \frac{\beta}{\sqrt{G}} \sum_{g} u_{g,1}
             + \frac{\gamma}{\sqrt{P}} \sum_{g < h} u_{g,2}\, u_{h,2},

    with :math:`G` groups, :math:`P = G(G-1)/2` pairs, :math:`\beta` = ``main_effect``
    and :math:`\gamma` = ``interaction``, so the two parts have variances
    :math:`\beta^2` and :math:`\gamma^2`. Because the groups' latents are independent,
    the expected log-hazard given the modalities of one group alone keeps only that
    group's main effect: no single-modality model can reach the C-index of a model that
    fuses the groups.

    Modality :math:`m` of group :math:`g`, of width :math:`p_m`, is a low-dimensional
    point seen through a fixed random linear map and isotropic noise, then L2-normalised
    as many foundation models' embeddings are:

    .. math::

        x_m = \frac{r}{\lVert r \rVert}, \qquad
        r = \mu_m + u_g W_m + \sigma \varepsilon, \qquad
        \varepsilon \sim \mathcal{N}(0, I / p_m),

    where :math:`\mu_m` (unit norm) and :math:`W_m` (scaled so that
    :math:`u_g W_m` has unit expected squared norm) play the part of the foundation model
    and :math:`\sigma` = ``noise``. They depend only on the modality's name, model name,
    width and ``n_latent``, never on ``random_state``: datasets drawn with different
    seeds share one feature space and can serve as training and test sets.

    Event times follow a Weibull proportional-hazards model,
    :math:`S(t \mid \eta) = \exp(-(t / 24)^{\rho} e^{\eta})` with :math:`\rho` =
    ``weibull_shape``. Censoring times are exponential, independent of everything else,
    with the rate set so that a fraction ``censoring_rate`` of the patients is censored.

    Parameters
    ----------
    n_samples : int, default=200
        Number of patients.
    modalities : dict of str to int, default=None
        Modality name to embedding width, in column order. ``None`` gives the M4Survive
        setting: ``{"t1": 1024, "t1pc": 1024, "t2": 1024, "flair": 1024,
        "pathology": 1536}``. Names must not contain ``"__"``.
    model_names : dict of str to str or None, default=None
        Foundation-model name per modality, used in the column names
        ``"<modality>__<model>__<k>"``; a modality mapped to ``None`` gets
        ``"<modality>__<k>"``. Modalities left out get ``"medimageinsight"`` for
        ``t1``, ``t1pc``, ``t2`` and ``flair``, ``"uni2h"`` for ``pathology``, and no
        model name otherwise.
    groups : dict of str to list of str, default=None
        Modalities that see the same latent vector, like several MRI sequences of one
        tumour. Modalities not listed form a group of their own. ``None`` puts
        ``t1``, ``t1pc``, ``t2`` and ``flair`` in one radiology group when
        ``modalities`` is ``None``, and every modality in its own group otherwise.
    n_latent : int, default=8
        Intrinsic dimension of each group's latent vector, at least 2 (one main-effect
        and one interaction factor; the others only shape the embeddings).
    main_effect : float, default=0.75
        Standard deviation :math:`\beta` of the main-effect part of the log-hazard.
    interaction : float, default=1.5
        Standard deviation :math:`\gamma` of the cross-modal part of the log-hazard.
        Needs at least two groups unless it is 0.
    noise : float, default=1.0
        Norm :math:`\sigma` of the isotropic noise relative to the signal's norm.
    censoring_rate : float, default=0.3
        Fraction of censored patients, in [0, 1).
    missing_rate : float or dict of str to float, default=0.0
        Probability that a patient lacks a modality, in [0, 1): one rate for every
        modality, or a dict modality -> rate where modalities left out are never
        missing (``{"pathology": 0.4}`` removes only pathology slides). A missing
        modality has all its columns NaN. A patient whose draws would remove every
        modality keeps one of them, chosen at random, so the realised rates fall short of
        the requested ones by about :math:`\prod_m r_m / M` for :math:`M` modalities of
        equal rate: little with five modalities, noticeably with two.
    weibull_shape : float, default=1.0
        Shape :math:`\rho` of the Weibull baseline hazard; 1 is exponential.
    dtype : {numpy.float32, numpy.float64}, default=numpy.float32
        Dtype of ``X``. float32 halves the memory: 100,000 patients at the default
        widths take 2.3 GB instead of 4.5 GB.
    return_risk : bool, default=False
        Also return the true log-hazard :math:`\eta`, for the oracle C-index.
    random_state : int, RandomState instance or None, default=None
        Draws the latents, noise, times and missing modalities. Each uses its own
        stream, so with a fixed ``random_state`` changing ``main_effect``,
        ``interaction``, ``censoring_rate`` or ``missing_rate`` keeps everything the
        parameter does not act on (for example the same embeddings, only other NaN).

    Returns
    -------
    X : pandas.DataFrame of shape (n_samples, sum of widths)
        The embeddings, columns ``"<modality>__<model>__<k>"``.
    y : structured ndarray of shape (n_samples,)
        Event indicator and observed time, built with
        :meth:`sksurv.util.Surv.from_arrays`. Times are continuous and strictly positive.
    risk : ndarray of shape (n_samples,)
        The true log-hazard :math:`\eta` (float64). Only if ``return_risk`` is True.

    See Also
    --------
    load_breast_cancer : A real cohort with two modalities.

    References
    ----------
    .. [1] Lee, H. H., Santamaria-Pang, A., Merkov, J., Lungren, M. and Tarapov, I.,
           "Multi-Modal Mamba Modeling for Survival Prediction (M4Survive): Adapting Joint
           Foundation Model Representations", arXiv:2503.10057, 2025.

    Examples
    --------
    >>> from sksurv.metrics import concordance_index_censored
    >>> from sksurvfusion.datasets import make_multimodal_survival
    >>> X, y = make_multimodal_survival(n_samples=50, random_state=0)
    >>> X.shape
    (50, 5632)
    >>> X.columns[[0, -1]].tolist()
    ['t1__medimageinsight__0', 'pathology__uni2h__1535']

    Small widths, a missing pathology slide for a third of the patients, and the oracle
    C-index of the true log-hazard:

    >>> X, y, risk = make_multimodal_survival(
    ...     n_samples=500,
    ...     modalities={"radiology": 32, "pathology": 48},
    ...     missing_rate={"pathology": 0.3},
    ...     return_risk=True,
    ...     random_state=0,
    ... )
    >>> X.shape
    (500, 80)
    >>> event, time = y[y.dtype.names[0]], y[y.dtype.names[1]]
    >>> c_index = concordance_index_censored(event, time, risk)[0]
    >>> bool(c_index > 0.7)
    True
    """
    n_samples = _check_int(n_samples, "n_samples", minimum=1)
    n_latent = _check_int(n_latent, "n_latent", minimum=2)
    main_effect = _check_float(main_effect, "main_effect", minimum=0.0)
    interaction = _check_float(interaction, "interaction", minimum=0.0)
    noise = _check_float(noise, "noise", minimum=0.0)
    weibull_shape = _check_float(weibull_shape, "weibull_shape", minimum=0.0, strict=True)
    censoring_rate = _check_rate(censoring_rate, "censoring_rate")
    dtype = _check_dtype(dtype)

    widths = _check_modalities(modalities)
    names = list(widths)
    models = _check_model_names(model_names, names)
    group_of = _check_groups(groups, names, default=modalities is None)
    rates = _check_missing_rate(missing_rate, names)
    n_groups = max(group_of.values()) + 1
    if interaction > 0 and n_groups < 2:
        raise ValueError(
            "interaction needs at least two modality groups to act across; got one group "
            f"({names}). Pass more modalities, separate groups, or interaction=0."
        )

    # Independent streams keep each part of the data fixed when a parameter that acts on
    # another part changes, e.g. the same embeddings with more missing modalities.
    seed = check_random_state(random_state).randint(np.iinfo(np.int32).max, size=4)
    latent_seq, noise_seq, time_seq, missing_seq = np.random.SeedSequence(seed.tolist()).spawn(4)

    latent = np.random.default_rng(latent_seq).standard_normal((n_samples, n_groups, n_latent))
    risk = _log_hazard(latent, main_effect, interaction)

    columns = []
    X = np.empty((n_samples, sum(widths.values())), dtype=dtype)
    start = 0
    for name, noise_child in zip(names, noise_seq.spawn(len(names)), strict=True):
        width, model = widths[name], models[name]
        stop = start + width
        _embed(
            latent[:, group_of[name]].astype(dtype),
            out=X[:, start:stop],
            projection=_foundation_model(name, model, width, n_latent, dtype),
            noise=noise,
            rng=np.random.default_rng(noise_child),
        )
        prefix = name if model is None else f"{name}__{model}"
        columns.extend(f"{prefix}__{k}" for k in range(width))
        start = stop

    event, time = _survival_times(
        risk, weibull_shape, censoring_rate, np.random.default_rng(time_seq)
    )

    missing = _missing_mask(n_samples, rates, np.random.default_rng(missing_seq))
    start = 0
    for j, name in enumerate(names):
        stop = start + widths[name]
        X[missing[:, j], start:stop] = np.nan
        start = stop

    X = pd.DataFrame(X, columns=columns, copy=False)
    y = Surv.from_arrays(event, time)
    if return_risk:
        return X, y, risk
    return X, y


def _log_hazard(latent: np.ndarray, main_effect: float, interaction: float) -> np.ndarray:
    n_groups = latent.shape[1]
    main = latent[:, :, 0].sum(axis=1) / np.sqrt(n_groups)
    risk = main_effect * main
    n_pairs = n_groups * (n_groups - 1) // 2
    if n_pairs > 0:
        factors = latent[:, :, 1]
        # sum over pairs g < h of a_g a_h, in O(G) instead of O(G^2)
        pairwise = (factors.sum(axis=1) ** 2 - (factors**2).sum(axis=1)) / 2
        risk = risk + interaction * pairwise / np.sqrt(n_pairs)
    return risk


def _foundation_model(
    name: str, model: str | None, width: int, n_latent: int, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray]:
    # crc32, unlike hash(), is the same in every Python process, so the map is too.
    key = f"{name}|{model}|{width}|{n_latent}".encode()
    rng = np.random.default_rng(zlib.crc32(key))
    offset = rng.standard_normal(width)
    offset /= np.linalg.norm(offset)
    weights = rng.standard_normal((n_latent, width)) / np.sqrt(n_latent * width)
    return offset.astype(dtype), weights.astype(dtype)


def _embed(
    latent: np.ndarray,
    *,
    out: np.ndarray,
    projection: tuple[np.ndarray, np.ndarray],
    noise: float,
    rng: np.random.Generator,
) -> None:
    offset, weights = projection
    n_samples, width = latent.shape[0], weights.shape[1]
    noise_scale = out.dtype.type(noise / np.sqrt(width))
    # Reused buffers: allocating fresh chunks costs as much as filling them at this size.
    signal = np.empty((min(_CHUNK_ROWS, n_samples), width), dtype=out.dtype)
    eps = np.empty_like(signal)
    for start in range(0, n_samples, _CHUNK_ROWS):
        stop = min(start + _CHUNK_ROWS, n_samples)
        chunk, chunk_eps = signal[: stop - start], eps[: stop - start]
        np.matmul(latent[start:stop], weights, out=chunk)
        chunk += offset
        rng.standard_normal(dtype=out.dtype, out=chunk_eps)
        chunk_eps *= noise_scale
        chunk += chunk_eps
        # einsum avoids the squared temporary that np.linalg.norm allocates.
        norm = np.sqrt(np.einsum("ij,ij->i", chunk, chunk))
        chunk /= norm[:, None]
        out[start:stop] = chunk


def _survival_times(
    risk: np.ndarray, shape: float, censoring_rate: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    n_samples = risk.shape[0]
    event_time = _BASELINE_SCALE * (rng.standard_exponential(n_samples) * np.exp(-risk)) ** (
        1.0 / shape
    )
    censoring_draw = rng.standard_exponential(n_samples)
    if censoring_rate > 0:
        # A patient is censored when censoring_draw / rate < event_time, i.e. when
        # censoring_draw / event_time < rate: the quantile of that ratio gives the rate
        # that censors the requested fraction, without a root search.
        rate = np.quantile(censoring_draw / event_time, censoring_rate)
        censoring_time = censoring_draw / rate
    else:
        censoring_time = np.full(n_samples, np.inf)
    event = event_time <= censoring_time
    # A zero exponential draw has probability ~1e-16 but would give a time of 0.
    time = np.maximum(np.minimum(event_time, censoring_time), np.finfo(np.float64).tiny)
    return event, time


def _missing_mask(n_samples: int, rates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    draws = rng.random((n_samples, rates.shape[0]))
    missing = draws < rates
    all_missing = missing.all(axis=1)
    if all_missing.any():
        # draws / rates is uniform on [0, 1) for every missing modality, so its argmax
        # picks the modality to keep uniformly at random without another draw.
        keep = np.argmax(draws[all_missing] / rates, axis=1)
        missing[np.flatnonzero(all_missing), keep] = False
    return missing


def _check_int(value: object, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _check_float(value: object, name: str, *, minimum: float, strict: bool = False) -> float:
    valid = (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and np.isfinite(value)
        and (value > minimum if strict else value >= minimum)
    )
    if not valid:
        bound = ">" if strict else ">="
        raise ValueError(f"{name} must be a finite number {bound} {minimum}, got {value!r}.")
    return float(value)


def _check_rate(value: object, name: str) -> float:
    valid = isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 <= value < 1
    if not valid:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}.")
    return float(value)


def _check_dtype(dtype: DTypeLike) -> np.dtype:
    # np.dtype(None) is float64, so None must not reach the comparison below.
    try:
        checked = None if dtype is None else np.dtype(dtype)
    except TypeError:
        checked = None
    if checked is None or checked.type not in (np.float32, np.float64):
        raise ValueError(f"dtype must be numpy.float32 or numpy.float64, got {dtype!r}.")
    return checked


def _check_modalities(modalities: Mapping[str, int] | None) -> dict[str, int]:
    if modalities is None:
        return dict(_DEFAULT_MODALITIES)
    if not isinstance(modalities, Mapping) or len(modalities) == 0:
        raise ValueError(
            f"modalities must be None or a non-empty dict name -> width, got {modalities!r}."
        )
    for name, width in modalities.items():
        _check_name(name, "modalities")
        _check_int(width, f"modalities[{name!r}]", minimum=1)
    return {name: int(width) for name, width in modalities.items()}


def _check_name(name: object, parameter: str) -> None:
    # "__" separates modality, model and feature index in the column names.
    if not isinstance(name, str) or not name or "__" in name:
        raise ValueError(f"{parameter} names must be non-empty strings without '__', got {name!r}.")


def _check_known(keys: Sequence[object], names: list[str], parameter: str) -> None:
    unknown = [key for key in keys if key not in names]
    if unknown:
        raise ValueError(f"{parameter} names unknown modalities {unknown}; modalities: {names}.")


def _check_model_names(
    model_names: Mapping[str, str | None] | None, names: list[str]
) -> dict[str, str | None]:
    models = {name: _DEFAULT_MODEL_NAMES.get(name) for name in names}
    if model_names is None:
        return models
    if not isinstance(model_names, Mapping):
        raise ValueError(f"model_names must be None or a dict, got {model_names!r}.")
    _check_known(list(model_names), names, "model_names")
    for name, model in model_names.items():
        if model is not None:
            _check_name(model, "model_names")
        models[name] = model
    return models


def _check_groups(
    groups: Mapping[str, Sequence[str]] | None, names: list[str], *, default: bool
) -> dict[str, int]:
    if groups is None:
        groups = _DEFAULT_GROUPS if default else {}
    if not isinstance(groups, Mapping):
        raise ValueError(f"groups must be None or a dict group -> modalities, got {groups!r}.")
    group_of: dict[str, int] = {}
    for members in groups.values():
        if isinstance(members, str) or not isinstance(members, Sequence) or not members:
            raise ValueError(
                f"groups values must be non-empty lists of modality names, got {members!r}."
            )
        _check_known(list(members), names, "groups")
        index = len(set(group_of.values()))
        for member in members:
            if member in group_of:
                raise ValueError(f"groups lists modality {member!r} more than once.")
            group_of[member] = index
    # Ungrouped modalities get groups of their own; renumber in column order so that the
    # latent of a group does not depend on how the groups dict is ordered.
    for name in names:
        if name not in group_of:
            group_of[name] = len(set(group_of.values()))
    order = {}
    for name in names:
        order.setdefault(group_of[name], len(order))
    return {name: order[group_of[name]] for name in names}


def _check_missing_rate(missing_rate: float | Mapping[str, float], names: list[str]) -> np.ndarray:
    if isinstance(missing_rate, Mapping):
        _check_known(list(missing_rate), names, "missing_rate")
        return np.array(
            [_check_rate(missing_rate.get(name, 0.0), f"missing_rate[{name!r}]") for name in names]
        )
    rate = _check_rate(missing_rate, "missing_rate")
    return np.full(len(names), rate)
