"""Random draws from a generator of one's own instead of torch's process-wide one.

Torch's global generator is shared by every thread, so two trainings running at once in
threads draw from one stream and neither is reproducible. A training that owns a
``torch.Generator`` builds its modules inside :func:`draws_from` and hands the generator
to the modules that draw while training (:class:`Dropout`, the tokenizer's modality
dropout) with :func:`set_generator`; the global generator is then never used.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

__all__ = ["Dropout", "draws_from", "set_generator"]

_TENSOR_DRAWS = (
    "uniform_",
    "normal_",
    "bernoulli_",
    "random_",
    "exponential_",
    "cauchy_",
    "log_normal_",
    "geometric_",
)
_TORCH_DRAWS = (
    "rand",
    "randn",
    "randint",
    "randperm",
    "rand_like",
    "randn_like",
    "randint_like",
    "normal",
    "bernoulli",
    "multinomial",
    "poisson",
)
# The initialisers are torch functions in their own right: the mode sees them rather than
# the draws they make, so they take the generator themselves.
_INIT_DRAWS = tuple(
    name
    for name in dir(nn.init)
    if name.endswith("_")
    and not name.startswith("_")
    and "generator" in inspect.signature(getattr(nn.init, name)).parameters
)
_DRAWS = frozenset(
    [getattr(Tensor, name) for name in _TENSOR_DRAWS]
    + [getattr(torch, name) for name in _TORCH_DRAWS]
    + [getattr(nn.init, name) for name in _INIT_DRAWS]
)


class _RoutedDraws(TorchFunctionMode):
    def __init__(self, generator: torch.Generator) -> None:
        super().__init__()
        self.generator = generator

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _DRAWS and kwargs.get("generator") is None:
            kwargs = {**kwargs, "generator": self.generator}
        return func(*args, **kwargs)


@contextlib.contextmanager
def draws_from(generator: torch.Generator) -> Iterator[None]:
    """Route torch's random draws in this thread to ``generator``.

    Inside the block, every random function called without a ``generator`` (the draws of
    module constructors and of :mod:`torch.nn.init`) uses ``generator``; other threads
    are not affected (torch function modes are per thread). Meant for building modules,
    not for training loops, where the mode would cost every operation a Python call.

    Parameters
    ----------
    generator : torch.Generator
        On the device of the tensors drawn (the CPU, for module construction).

    Examples
    --------
    >>> import torch
    >>> from sksurvfusion.nn import Mamba
    >>> from sksurvfusion.nn._random import draws_from
    >>> with draws_from(torch.Generator().manual_seed(0)):
    ...     first = Mamba(8)
    >>> with draws_from(torch.Generator().manual_seed(0)):
    ...     second = Mamba(8)
    >>> bool(torch.equal(first.in_proj.weight, second.in_proj.weight))
    True
    """
    with _RoutedDraws(generator):
        yield


class Dropout(nn.Dropout):
    """:class:`torch.nn.Dropout` that draws from ``generator`` when one is set.

    Without a generator (the default) it is torch's dropout, drawing from the global
    generator.

    Attributes
    ----------
    generator : torch.Generator or None
        Source of the dropout masks, on the device of the inputs.
    """

    generator: torch.Generator | None = None

    def forward(self, input: Tensor) -> Tensor:
        if self.generator is None or not self.training or self.p == 0:
            return F.dropout(input, self.p, self.training, self.inplace)
        keep = torch.empty_like(input).bernoulli_(1.0 - self.p, generator=self.generator)
        if self.p < 1:
            keep.div_(1.0 - self.p)
        return input.mul_(keep) if self.inplace else input * keep


def set_generator(module: nn.Module, generator: torch.Generator | None) -> None:
    """Give every submodule that draws while training (a ``generator`` attribute) its source.

    Parameters
    ----------
    module : torch.nn.Module
    generator : torch.Generator or None
        ``None`` returns them to torch's global generator.
    """
    for submodule in module.modules():
        if hasattr(submodule, "generator"):
            submodule.generator = generator
