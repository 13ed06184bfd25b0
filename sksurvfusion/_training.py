"""The skorch side of training: batches of tensors, flat optimizer buffers, weight
averaging, the validation split, and batched inference."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from skorch import NeuralNet
from skorch.callbacks import Callback, EarlyStopping, EpochScoring, ProgressBar
from skorch.dataset import Dataset
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, Subset

from sksurvfusion.losses import CoxPartialLikelihoodLoss
from sksurvfusion.metrics import _concordance_index
from sksurvfusion.nn import FusionSurvivalNet
from sksurvfusion.nn._random import draws_from, set_generator

__all__ = ["build_net", "infer", "tensor_view"]

# Rows per inference batch on the CPU: as many as fit in _INFERENCE_BYTES of float32
# input, within these bounds (on a GPU, the most). The encoders copy each batch's
# columns once; below ~32 MiB the copy stays in the cache and in memory the allocator
# reuses, where 4096 rows of 5,632 columns (90 MiB) ran 1.5 times slower. Narrow tables
# take the most rows: the Python of one forward pass costs about a millisecond.
_INFERENCE_BATCH = 4096
_INFERENCE_MIN_BATCH = 256
_INFERENCE_BYTES = 1 << 25
# bytes of rows that a training iterator gathers at once
_GATHER_BYTES = 1 << 24
# module arguments that are estimator parameters of the same name
_MODULE_PARAMS = (
    "adapter",
    "d_model",
    "n_layers",
    "d_state",
    "d_conv",
    "expand",
    "n_heads",
    "encoder_hidden",
    "dropout",
    "modality_dropout",
    "pooling",
    "bidirectional",
    "risk_bound",
    "linear_term",
    "mamba_backend",
)


def tensor_view(array: np.ndarray) -> torch.Tensor:
    """``torch.from_numpy(array)``, a view, also of a read-only array.

    pandas 3 hands out read-only views of a frame's values, on which torch warns that
    writing to the tensor would be undefined. The estimator only reads its input, so
    the warning says nothing to the user and is not shown.
    """
    if array.flags.writeable:
        return torch.from_numpy(array)
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="The given NumPy array is not writable", category=UserWarning
        )
        return torch.from_numpy(array)


def _dataset_tensors(dataset):
    """``(X, y, rows)`` behind a skorch Dataset of tensors or a Subset of one, else None:
    the dataset's tensors and the positions of its rows in them (None for all rows)."""
    if isinstance(dataset, Subset):
        tensors = _dataset_tensors(dataset.dataset)
        if tensors is None:
            return None
        X, y, rows = tensors
        index = torch.as_tensor(dataset.indices, dtype=torch.long)
        return X, y, index if rows is None else rows[index]
    X, y = getattr(dataset, "X", None), getattr(dataset, "y", None)
    if (
        # exactly skorch's Dataset: a subclass may transform its items
        type(dataset) is Dataset
        and isinstance(X, dict)
        and all(isinstance(v, torch.Tensor) for v in X.values())
        and (y is None or isinstance(y, torch.Tensor))
    ):
        return X, y, None
    return None


class _TensorBatches:
    """skorch iterator whose batches are slices of the dataset's tensors.

    Rows are gathered (in a random order when shuffling) a chunk of about
    ``_GATHER_BYTES`` at a time, and the batches are slices of the chunk: one gather
    for many small batches, as cheap as one for the whole epoch, while the memory held
    stays a few megabytes instead of a copy of ``X`` (the DataLoader route gathers once
    per batch; skorch's default, once per row).
    """

    def __init__(self, X, y, batch_size, shuffle, generator=None, rows=None):
        self.X, self.y, self.rows = X, y, rows
        self.batch_size, self.shuffle, self.generator = batch_size, shuffle, generator
        self.n_samples = len(next(iter(X.values()))) if rows is None else len(rows)

    def __len__(self):
        return -(-self.n_samples // self.batch_size)

    def __iter__(self):
        X, y, rows = self.X, self.y, self.rows
        if self.shuffle:
            order = torch.randperm(self.n_samples, generator=self.generator)
            rows = order if rows is None else rows[order]
        # skorch's own placeholder for a missing target
        placeholder = torch.Tensor([0])
        row_bytes = sum(v[:1].numel() * v.element_size() for v in X.values())
        per_chunk = max(1, _GATHER_BYTES // max(1, row_bytes * self.batch_size))
        chunk_rows = per_chunk * self.batch_size
        for chunk_start in range(0, self.n_samples, chunk_rows):
            chunk_stop = min(chunk_start + chunk_rows, self.n_samples)
            if rows is None:
                X_chunk = {k: v[chunk_start:chunk_stop] for k, v in X.items()}
                y_chunk = None if y is None else y[chunk_start:chunk_stop]
            else:
                index = rows[chunk_start:chunk_stop]
                X_chunk = {k: v[index] for k, v in X.items()}
                y_chunk = None if y is None else y[index]
            for start in range(0, chunk_stop - chunk_start, self.batch_size):
                stop = start + self.batch_size
                yield (
                    {k: v[start:stop] for k, v in X_chunk.items()},
                    placeholder if y_chunk is None else y_chunk[start:stop],
                )


def _batch_loader(dataset, batch_size, shuffle=False, generator=None):
    """Batches of a dataset: tensor slices when it holds tensors, else a DataLoader."""
    tensors = _dataset_tensors(dataset)
    if tensors is not None:
        X, y, rows = tensors
        return _TensorBatches(X, y, batch_size, shuffle, generator, rows=rows)
    sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
    return DataLoader(
        dataset, sampler=BatchSampler(sampler, batch_size, drop_last=False), batch_size=None
    )


def _flat_groups(params):
    """Parameters grouped by (device, dtype), in order."""
    groups: dict[tuple, list] = {}
    for param in params:
        groups.setdefault((param.device, param.dtype), []).append(param)
    return list(groups.values())


def _bind_flat(params, flats) -> None:
    """Copy each parameter into its slice of the flat buffers, then make the parameter
    and its gradient views of their slices (the gradient zeroed)."""
    groups = _flat_groups(params)
    sizes = [sum(p.numel() for p in group) for group in groups]
    if sizes != [flat.numel() for flat in flats]:
        raise RuntimeError(
            f"the optimizer holds flat buffers of {[f.numel() for f in flats]} elements for "
            f"parameters of {sizes}; re-initialise the optimizer after changing the module"
        )
    for group, flat in zip(groups, flats, strict=True):
        # a new tensor first: the parameters may already be views of flat
        flat.data.copy_(torch.cat([p.detach().reshape(-1) for p in group]))
        if flat.grad is None:
            flat.grad = torch.zeros_like(flat)
        else:
            flat.grad.zero_()
        start = 0
        for param in group:
            stop = start + param.numel()
            param.data = flat.data[start:stop].view_as(param)
            param.grad = flat.grad[start:stop].view_as(param)
            start = stop


class _SurvivalNet(NeuralNet):
    """skorch's NeuralNet, drawing its random numbers from its own ``generator``.

    The module is built with every draw routed to ``generator``, and while training its
    dropout layers draw from it (or from a generator of the module's device seeded alike),
    so that trainings in concurrent threads stay reproducible and torch's global
    generator is left alone; the training iterator shuffles with it too
    (``iterator_train__generator``, the same object).

    One cost is taken out: skorch sets the training mode of every submodule before every
    batch, which at these sizes costs as much as a small layer.
    """

    def __init__(self, *args, generator=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.generator = generator

    def initialize_module(self):
        if self.generator is None:
            return super().initialize_module()
        with draws_from(self.generator):
            return super().initialize_module()

    def initialize(self):
        super().initialize()
        device = torch.device(self.device)
        # ends in "_", so skorch keeps it out of get_params
        self.dropout_generator_ = (
            self.generator
            if self.generator is None or device.type == "cpu"
            else torch.Generator(device).manual_seed(self.generator.initial_seed())
        )
        return self

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        set_generator(self.module_, self.dropout_generator_)

    def on_train_end(self, net, X=None, y=None, **kwargs):
        # a fitted module draws from the global generator, as any torch module does
        set_generator(self.module_, None)

    def _set_training(self, training=True):
        if getattr(self, "training_mode_", None) is training and (
            self.module_.training is training
        ):
            return
        super()._set_training(training)
        # ends in "_", so skorch keeps it out of get_params
        self.training_mode_ = training

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        # callbacks learn at on_train_begin how many epochs this call runs
        self.epochs_in_call_ = fit_params.get("epochs") or self.max_epochs
        return super().partial_fit(X, y, classes=classes, **fit_params)


class _FlatSurvivalNet(_SurvivalNet):
    """A net whose optimizer steps one flat buffer instead of each parameter tensor.

    An optimizer step costs per parameter tensor, several microseconds each. While
    training, the parameters and their gradients are views of one flat buffer per device
    and dtype, and the optimizer updates the buffers: one tensor instead of dozens. The
    update is elementwise, so equal to updating the parameters one by one. Gradients are
    zeroed in place, keeping them views, so a parameter without a gradient in a step
    still gets its weight decay: used only when no callback can freeze parameters
    (skorch's ``Freezer``) or otherwise change which ones train.
    """

    def initialize_optimizer(self, triggered_directly=None):
        named = list(self.get_all_learnable_params())
        _, kwargs = self.get_params_for_optimizer("optimizer", named)
        params = [p for _, p in named]
        flats = [
            torch.nn.Parameter(
                torch.empty(
                    sum(p.numel() for p in group), dtype=group[0].dtype, device=group[0].device
                )
            )
            for group in _flat_groups(params)
        ]
        _bind_flat(params, flats)  # fills the buffers
        self.optimizer_ = self.optimizer(flats, **kwargs)
        return self

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        super().on_train_begin(net, X=X, y=y, **kwargs)
        # Between fits the parameters may have been replaced (unpickling, module.to):
        # bind them to the optimizer's buffers again, carrying their current values.
        flats = [p for group in self.optimizer_.param_groups for p in group["params"]]
        _bind_flat([p for _, p in self.get_all_learnable_params()], flats)

    def _zero_grad_optimizer(self, set_to_none=None):
        # torch's default, set_to_none=True, would drop the views of the flat gradients
        super()._zero_grad_optimizer(set_to_none=False)


class _WeightAveraging(Callback):
    """Replace the trained weights by their average over the last epochs.

    ``round(fraction * epochs)`` epochs are averaged, the last of the ``epochs`` that the
    training call runs (``max_epochs`` unless ``partial_fit`` is given ``epochs``); fewer
    than two leave the last weights. Torch's ``AveragedModel`` keeps the running mean
    from the end of each of those epochs; it is copied into the parameters when
    training ends, in place, so that parameters that are views of a flat buffer stay
    views. A fit stopped before the first averaged epoch keeps its last weights.
    """

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        epochs = getattr(net, "epochs_in_call_", net.max_epochs)
        n_epochs = round(self.fraction * epochs)
        # epochs are counted within this call: a partial_fit goes on with the history
        first = len(net.history) + epochs - n_epochs + 1
        self.first_epoch_ = first if n_epochs > 1 else None
        self.average_ = None

    def on_epoch_end(self, net, **kwargs):
        if self.first_epoch_ is None or len(net.history) < self.first_epoch_:
            return
        if self.average_ is None:
            self.average_ = AveragedModel(net.module_)
        self.average_.update_parameters(net.module_)

    def on_train_end(self, net, X=None, y=None, **kwargs):
        if self.average_ is not None:
            with torch.no_grad():
                averaged = self.average_.module.parameters()
                for param, average in zip(net.module_.parameters(), averaged, strict=True):
                    param.copy_(average)
        self.average_ = None  # keeps the fitted net small


class _EventStratifiedSplit:
    """skorch ``train_split``: hold out a fraction, stratified on the event indicator."""

    def __init__(self, fraction: float, seed: int) -> None:
        self.fraction = fraction
        self.seed = seed

    def __call__(self, dataset, y=None, **fit_params):
        event = np.asarray(y[:, 0], dtype=bool)
        train, valid = train_test_split(
            np.arange(len(event)), test_size=self.fraction, stratify=event, random_state=self.seed
        )
        return Subset(dataset, train.tolist()), Subset(dataset, valid.tolist())


def _validation_cindex(net, X, y) -> float:
    risk = net.predict(X).reshape(-1)
    event = np.asarray(y[:, 0], dtype=bool)
    if not event.any():
        return float("nan")
    return _concordance_index(event, y[:, 1], risk)[0]


def build_net(estimator, modalities, groups, device, seed) -> NeuralNet:
    """The skorch net that trains ``estimator``'s network on ``modalities``."""
    callbacks = []
    train_split = None
    if estimator.early_stopping:
        train_split = _EventStratifiedSplit(estimator.validation_fraction, seed)
        callbacks += [
            (
                "valid_cindex",
                EpochScoring(_validation_cindex, lower_is_better=False, name="valid_cindex"),
            ),
            (
                "early_stopping",
                EarlyStopping(
                    monitor="valid_cindex",
                    lower_is_better=False,
                    patience=estimator.patience,
                    load_best=True,
                    sink=print if estimator.verbose else _silent,
                ),
            ),
        ]
    elif estimator.swa_fraction:
        callbacks.append(("weight_averaging", _WeightAveraging(estimator.swa_fraction)))
    if estimator.verbose:
        callbacks.append(("progress_bar", ProgressBar()))
    callbacks += list(estimator.callbacks or [])
    module_params = {f"module__{name}": getattr(estimator, name) for name in _MODULE_PARAMS}
    # user callbacks may freeze parameters, which flat buffers would still decay
    net_class = _SurvivalNet if estimator.callbacks else _FlatSurvivalNet
    # one stream per fit: initialisation, shuffling and dropout
    generator = torch.Generator().manual_seed(seed)
    return net_class(
        FusionSurvivalNet,
        module__modality_columns=[columns.tolist() for columns in modalities.values()],
        module__encoder_groups=groups or None,
        **module_params,
        criterion=CoxPartialLikelihoodLoss,
        criterion__ties=estimator.ties,
        optimizer=torch.optim.AdamW,
        optimizer__weight_decay=estimator.weight_decay,
        # one fused kernel instead of ~10 small ops per parameter tensor per step
        optimizer__fused=True,
        lr=estimator.lr,
        max_epochs=estimator.max_epochs,
        batch_size=-1 if estimator.batch_size is None else estimator.batch_size,
        generator=generator,
        iterator_train=_batch_loader,
        iterator_train__shuffle=True,
        iterator_train__generator=generator,
        iterator_valid=_batch_loader,
        iterator_valid__batch_size=_inference_batch(
            sum(len(columns) for columns in modalities.values()), device
        ),
        train_split=train_split,
        callbacks=callbacks,
        verbose=int(estimator.verbose),
        device=device,
    )


def _silent(*args, **kwargs) -> None:
    return None


def _inference_batch(n_features: int, device) -> int:
    """Rows per inference batch of a table of ``n_features`` float32 columns."""
    if torch.device(device).type != "cpu":  # no CPU cache to stay in
        return _INFERENCE_BATCH
    rows = _INFERENCE_BYTES // (4 * max(1, n_features))
    return max(_INFERENCE_MIN_BATCH, min(_INFERENCE_BATCH, rows))


def infer(module, X: np.ndarray, mask: np.ndarray, method: str, device) -> np.ndarray:
    module.eval()
    call = getattr(module, method)
    batch = _inference_batch(X.shape[1], device)
    outputs = []
    with torch.inference_mode():
        for start in range(0, X.shape[0], batch):
            stop = start + batch
            x = tensor_view(X[start:stop]).to(device)
            m = torch.from_numpy(mask[start:stop]).to(device)
            outputs.append(call(x, m).float().cpu().numpy())
    return np.concatenate(outputs).astype(np.float64)
