"""File formats whose loading runs no code from the file.

A model file, written by :meth:`M4SurvivalEstimator.save
<sksurvfusion.M4SurvivalEstimator.save>`, is an archive written by :func:`torch.save`
holding a JSON header (the estimator's parameters, its modalities and the feature
names) and tensors (the network's weights, the baseline hazard and the risk
cut-points). It is read back by torch's restricted unpickler, which builds tensors
and plain containers only.

A pipeline file, written by :func:`save_pipeline`, is a :mod:`skops.io` archive
of a fitted pipeline in which each :class:`~sksurvfusion.M4SurvivalEstimator` is
replaced by the bytes of its model file. skops records the type of every object it
stores, and :func:`load_pipeline` builds the objects only once every type is on its
allow-list.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib
import io
import json
import os
import pickle
import types
import warnings
import zipfile
from collections.abc import Iterable, Sequence
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.compose import make_column_selector
from sksurv.functions import StepFunction
from sksurv.linear_model.coxph import BreslowEstimator

from sksurvfusion import __version__

__all__ = ["load_pipeline", "save_pipeline"]

# 2 added linear_term, 3 swa_fraction; files of format 1 hold networks without the
# term, files of formats 1 and 2 networks trained without weight averaging
_FORMAT_VERSION = 3
_READABLE_FORMATS = (1, 2, 3)
_MODEL_TENSORS = ("state_dict", "unique_times", "cum_baseline_hazard", "risk_cutpoints")
_MODEL_FILE = "M4SurvivalEstimator.load reads the files that M4SurvivalEstimator.save writes"
_PIPELINE_FILE = "load_pipeline reads the files that sksurvfusion.save_pipeline writes"
_UNPICKLED = "which are never unpickled here because unpickling can run code from the file"
# scikit-survival's public namespaces, whose estimators a pipeline may hold
_SKSURV_NAMESPACES = (
    "sksurv.ensemble",
    "sksurv.kernels",
    "sksurv.linear_model",
    "sksurv.meta",
    "sksurv.metrics",
    "sksurv.nonparametric",
    "sksurv.preprocessing",
    "sksurv.svm",
    "sksurv.tree",
)
# the modules that define sksurvfusion's transformers
_SKSURVFUSION_MODULES = ("sksurvfusion.baselines", "sksurvfusion.modality")


# ------------------------------------------------------------------- model files
def write_model(model, file) -> None:
    """Write the fitted ``model`` to ``file`` (a path or a binary file object)."""
    params = model.get_params()
    params["callbacks"] = None
    if not isinstance(params["random_state"], Integral):
        params["random_state"] = None  # a RandomState instance
    header = {
        "format": _FORMAT_VERSION,
        "sksurvfusion_version": __version__,
        "params": {name: _json_value(value, name) for name, value in params.items()},
        "modalities": {name: cols.tolist() for name, cols in model.modalities_.items()},
        "encoder_groups": model.net_.module__encoder_groups,
        "n_features_in": int(model.n_features_in_),
        "feature_names_in": (
            [str(c) for c in model.feature_names_in_]
            if hasattr(model, "feature_names_in_")
            else None
        ),
    }
    state = {k: v.detach().cpu() for k, v in model.net_.module_.state_dict().items()}
    torch.save(
        {
            "header": json.dumps(header),
            "state_dict": state,
            "unique_times": torch.from_numpy(model.unique_times_.astype(np.float64)),
            "cum_baseline_hazard": torch.from_numpy(
                model.cum_baseline_hazard_.y.astype(np.float64)
            ),
            "risk_cutpoints": torch.from_numpy(model.risk_cutpoints_.astype(np.float64)),
        },
        file,
    )


def read_model(cls, file, name: str | None = None):
    """An instance of ``cls`` (M4SurvivalEstimator) rebuilt from the model file ``file``.

    ``name`` says which file it is in error messages (by default the path).
    """
    if name is None:
        name = repr(os.fspath(file)) if isinstance(file, (str, os.PathLike)) else repr(file)
    payload = _read_payload(file, name)
    header = _read_header(payload, name)
    try:
        return _rebuild(cls, header, payload)
    except (AttributeError, KeyError, TypeError, RuntimeError) as exc:
        raise ValueError(
            f"{name} is a damaged model file ({type(exc).__name__}: {exc}); save the model "
            "again with M4SurvivalEstimator.save"
        ) from exc


def _read_payload(file, name: str) -> dict:
    with contextlib.ExitStack() as stack:
        if isinstance(file, (str, os.PathLike)):
            # a missing or unreadable file keeps its OSError; torch's errors are about content
            file = stack.enter_context(open(file, "rb"))
        try:
            with warnings.catch_warnings():
                # torch warns about files it then refuses anyway
                for message in ("Detected pickle protocol", "'torch.load' received a zip file"):
                    warnings.filterwarnings("ignore", message, UserWarning)
                payload = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as exc:
            reason = _unreadable_model(file, isinstance(exc, pickle.UnpicklingError))
            # torch's message may advise an unsafe load: such a cause is not chained
            cause = None if "weights_only" in str(exc) else exc
            raise ValueError(f"{name} is not a model file ({reason}): {_MODEL_FILE}") from cause
    if not isinstance(payload, dict) or any(
        key not in payload for key in ("header", *_MODEL_TENSORS)
    ):
        raise ValueError(
            f"{name} is not a model file (it is a torch file holding {_describe(payload)}, "
            f"not the model's header and tensors): {_MODEL_FILE}"
        )
    return payload


def _unreadable_model(file, unpickling: bool) -> str:
    """Why torch could not read the binary file object ``file``; ``unpickling`` says
    whether its restricted unpickler refused the content."""
    file.seek(0)
    first = file.read(1)
    if not first:
        return "the file is empty"
    if first == pickle.PROTO:
        return f"it holds pickled Python objects, as pickle and joblib write them, {_UNPICKLED}"
    if zipfile.is_zipfile(file):
        with zipfile.ZipFile(file) as archive:
            names = archive.namelist()
        if "schema.json" in names:
            return (
                "it is a pipeline file written by sksurvfusion.save_pipeline; read it with "
                "sksurvfusion.load_pipeline"
            )
        if any(entry.endswith("/constants.pkl") for entry in names):
            return "it is a TorchScript archive, as torch.jit.save writes them"
        if unpickling:
            return f"it is a torch file holding Python objects other than tensors, {_UNPICKLED}"
    # torch's own message stays in the chained cause
    return "torch cannot read it, so it is damaged, truncated or another kind of file"


def _describe(payload) -> str:
    if isinstance(payload, dict):
        keys = list(payload)
        more = f" and {len(keys) - 4} more" if len(keys) > 4 else ""
        return f"a dict with keys {keys[:4]}{more}"
    return f"a {type(payload).__name__}"


def _read_header(payload: dict, name: str) -> dict:
    try:
        header = json.loads(payload["header"])
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{name} is a damaged model file (its header is not JSON text); save the model "
            "again with M4SurvivalEstimator.save"
        ) from exc
    version = header.get("format") if isinstance(header, dict) else None
    if version not in _READABLE_FORMATS:
        written_by = header.get("sksurvfusion_version") if isinstance(header, dict) else None
        raise ValueError(
            f"{name}: unsupported model file format {version!r} (written by sksurvfusion "
            f"{written_by}); this version of sksurvfusion ({__version__}) reads formats "
            f"{list(_READABLE_FORMATS)}"
        )
    return header


def _rebuild(cls, header: dict, payload: dict):
    params = header["params"]
    params["modalities"] = _modalities_from_json(params.get("modalities"))
    if header["format"] == 1:
        params = {"linear_term": False, **params}
    if header["format"] < 3:
        params = {"swa_fraction": 0.0, **params}
    model = cls(**params)
    modalities = {
        name: np.asarray(cols, dtype=np.intp) for name, cols in header["modalities"].items()
    }
    device = model._resolve_device() if torch.cuda.is_available() else "cpu"
    net = model._build_net(modalities, header["encoder_groups"] or [], device, seed=0)
    net.initialize()
    net.module_.load_state_dict(payload["state_dict"])
    model.modalities_ = modalities
    model.n_features_in_ = header["n_features_in"]
    if header["feature_names_in"] is not None:
        model.feature_names_in_ = np.asarray(header["feature_names_in"], dtype=object)
    model.net_ = net
    model._n_features_out = model.d_model
    model._set_baseline(
        _breslow_from_arrays(
            payload["unique_times"].numpy(), payload["cum_baseline_hazard"].numpy()
        ),
        payload["risk_cutpoints"].numpy(),
    )
    return model


def _breslow_from_arrays(times: np.ndarray, cum_hazard: np.ndarray) -> BreslowEstimator:
    """A fitted BreslowEstimator rebuilt from its step values."""
    baseline = BreslowEstimator()
    baseline.unique_times_ = times
    baseline.cum_baseline_hazard_ = StepFunction(times, cum_hazard)
    baseline.baseline_survival_ = StepFunction(times, np.exp(-cum_hazard))
    return baseline


# a slice in a modality spec, as JSON
_SLICE = "slice"


def _json_value(value, name: str):
    """``value`` as JSON holds it: numpy scalars and arrays and pandas Index objects as
    Python numbers and lists, a slice as ``{"slice": [start, stop, step]}``."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (Integral, Real)):
        return value
    if isinstance(value, slice):
        return {_SLICE: [_json_value(v, name) for v in (value.start, value.stop, value.step)]}
    if isinstance(value, dict):
        return {str(k): _json_value(v, f"{name}[{k!r}]") for k, v in value.items()}
    if isinstance(value, Iterable):  # lists, tuples, ranges, arrays, pandas Index objects
        return [_json_value(v, name) for v in value]
    raise TypeError(
        f"save() cannot store parameter {name}={value!r}: a {type(value).__name__} is not "
        "a number, string, sequence, dict or slice"
    )


def _modalities_from_json(modalities):
    if not isinstance(modalities, dict):
        return modalities
    return {
        name: slice(*spec[_SLICE]) if isinstance(spec, dict) else spec
        for name, spec in modalities.items()
    }


# ---------------------------------------------------------------- pipeline files
class _StoredEstimator:
    """An M4SurvivalEstimator as a pipeline file holds it.

    A fitted estimator as the bytes of its model file, an unfitted one (as in a
    search's ``estimator``) as its parameters in JSON text. Pipeline files name
    this class: renaming or moving it makes older files unreadable.
    """

    def __init__(self, model) -> None:
        self.model_file = None
        self.params = None
        if hasattr(model, "net_"):
            buffer = io.BytesIO()
            write_model(model, buffer)
            self.model_file = buffer.getvalue()
        else:
            params = model.get_params() | {"callbacks": None}
            self.params = json.dumps({k: _json_value(v, k) for k, v in params.items()})

    def restore(self, cls, source: str):
        """The estimator, an instance of ``cls``; ``source`` names the pipeline file."""
        # the attributes come from the file: check them before use
        model_file = getattr(self, "model_file", None)
        params = getattr(self, "params", None)
        if isinstance(model_file, bytes):
            return read_model(cls, io.BytesIO(model_file), f"the {cls.__name__} in {source}")
        try:
            params = json.loads(params)
            params["modalities"] = _modalities_from_json(params.get("modalities"))
            return cls(**params)
        except (AttributeError, TypeError, ValueError) as exc:
            raise ValueError(
                f"{source} is a damaged pipeline file: it holds an {cls.__name__} without a "
                "model file or parameters; save the pipeline again with save_pipeline"
            ) from exc


def save_pipeline(pipeline: object, path: str | os.PathLike) -> None:
    """Save a fitted pipeline holding M4SurvivalEstimator to a file whose loading runs no code.

    :mod:`skops.io`, the pickle-free format that scikit-learn's guide to model
    persistence points to, stores the scikit-learn, scikit-survival and
    sksurvfusion transformers and estimators as data and records the type of
    each object; every
    :class:`~sksurvfusion.M4SurvivalEstimator` in ``pipeline`` is stored as the
    model file :meth:`~sksurvfusion.M4SurvivalEstimator.save` writes. Read the
    file with :func:`load_pipeline`. ``callbacks`` of the estimators are not
    saved.

    Needs the ``skops`` package (``pip install "sksurvfusion[skops]"``).

    Parameters
    ----------
    pipeline : estimator
        A fitted :class:`~sklearn.pipeline.Pipeline`, a search's
        ``best_estimator_``, or any estimator (or container of estimators)
        that skops can store once its M4SurvivalEstimator objects are replaced
        by their model files. A fitted search itself is refused, since it also
        holds its scorer: save its ``best_estimator_``. A warning names any
        type that
        :func:`load_pipeline` builds only when passed in ``trusted``.
    path : str or path-like
        The file to write; by skops' convention its name ends in ``.skops``.

    See Also
    --------
    load_pipeline : Read the file back.
    sksurvfusion.M4SurvivalEstimator.save : Save the estimator alone.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sksurvfusion import M4SurvivalEstimator, load_pipeline, save_pipeline
    >>> from sksurvfusion.datasets import make_multimodal_survival
    >>> X, y = make_multimodal_survival(
    ...     60, modalities={"mri": 8, "pathology": 8}, random_state=0
    ... )
    >>> pipe = make_pipeline(
    ...     StandardScaler().set_output(transform="pandas"),
    ...     M4SurvivalEstimator(d_model=8, max_epochs=2, random_state=0),
    ... ).fit(X, y)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "pipeline.skops"
    >>> save_pipeline(pipe, path)
    >>> bool((load_pipeline(path).predict(X) == pipe.predict(X)).all())
    True
    """
    skops_io = _skops_io("save_pipeline")
    if hasattr(pipeline, "best_estimator_") and hasattr(pipeline, "cv_results_"):
        raise ValueError(
            f"save_pipeline got a fitted {type(pipeline).__name__}, which also holds its "
            "splitter and scorer, objects that load_pipeline does not build: save the "
            "refitted model, save_pipeline(search.best_estimator_, path), and keep "
            "search.cv_results_ as a table (pandas.DataFrame(search.cv_results_).to_csv)"
        )
    # estimator.py imports this module
    from sksurvfusion.estimator import M4SurvivalEstimator

    # deepcopy puts each estimator's stand-in wherever the estimator occurs
    stand_ins = {
        id(model): _StoredEstimator(model) for model in _instances(pipeline, M4SurvivalEstimator)
    }
    # compressed, the model files inside are not mistaken for the archive when it is cut short
    data = skops_io.dumps(copy.deepcopy(pipeline, stand_ins), compression=zipfile.ZIP_DEFLATED)
    refused = _refused_types(skops_io.get_untrusted_types(data=data), [])
    if refused:
        warnings.warn(
            f"the pipeline holds types that load_pipeline builds only when they are passed "
            f"in trusted=: {refused}",
            UserWarning,
            stacklevel=2,
        )
    Path(path).write_bytes(data)


def load_pipeline(
    path: str | os.PathLike, *, trusted: Sequence[str | type] | None = None
) -> object:
    """Load a pipeline written by :func:`save_pipeline`, running no code from the file.

    The file names the type of every object it holds. They are checked against
    an allow-list before any object is built: scikit-learn's and
    scikit-survival's estimators and the objects they hold, numpy arrays and
    dtypes, and sksurvfusion's own classes. A file naming any other type is
    refused with a :class:`ValueError` that lists those types. The
    M4SurvivalEstimator objects are read from their model files as
    :meth:`~sksurvfusion.M4SurvivalEstimator.load` reads them, and a GPU-trained
    model loads on CPU.

    Needs the ``skops`` package (``pip install "sksurvfusion[skops]"``).

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save_pipeline`.
    trusted : sequence of str or type, default=None
        Further types to allow, such as your own transformers: the types
        themselves or their full names, as the error message lists them.
        Allow only types whose loading you trust, from a file whose origin you
        know.

    Returns
    -------
    pipeline : estimator
        The pipeline, fitted as it was saved.

    Raises
    ------
    ValueError
        If the file is not a pipeline file, or names a type that is not allowed.
    FileNotFoundError
        If there is no such file.

    See Also
    --------
    save_pipeline : Write the file.
    sksurvfusion.M4SurvivalEstimator.load : Load an estimator saved alone.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from sksurvfusion import load_pipeline, make_cox_baseline, save_pipeline
    >>> from sksurvfusion.datasets import make_multimodal_survival
    >>> X, y = make_multimodal_survival(
    ...     60, modalities={"mri": 8, "pathology": 8}, random_state=0
    ... )
    >>> baseline = make_cox_baseline().fit(X, y)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "baseline.skops"
    >>> save_pipeline(baseline, path)
    >>> bool((load_pipeline(path).predict(X) == baseline.predict(X)).all())
    True
    """
    skops_io = _skops_io("load_pipeline")
    from sksurvfusion.estimator import M4SurvivalEstimator

    trusted = _type_names(trusted)
    name = repr(os.fspath(path))
    data = Path(path).read_bytes()
    problem = _unreadable_pipeline(data)
    if problem is not None:
        raise ValueError(f"{name} is not a pipeline file ({problem}): {_PIPELINE_FILE}")
    try:
        found = skops_io.get_untrusted_types(data=data)
    except Exception as exc:
        # listing the types parses the schema and builds no object: whatever fails here
        # is the schema's fault
        raise ValueError(
            f"{name} is not a pipeline file (its skops schema is damaged: "
            f"{type(exc).__name__}: {exc}): {_PIPELINE_FILE}"
        ) from exc
    refused = _refused_types(found, trusted)
    if refused:
        raise ValueError(
            f"{name} names types that load_pipeline does not trust: {refused}. It builds "
            "scikit-learn's and scikit-survival's estimators, numpy arrays and "
            "sksurvfusion's own classes only, since building other types can run code from "
            "the file. save_pipeline warns when it writes any other type, so the file may "
            "have been altered; if the pipeline holds classes of your own, pass their names "
            "in trusted=[...], only for a file whose origin you know"
        )
    loaded = skops_io.loads(data, trusted=found)
    models = {
        id(stored): stored.restore(M4SurvivalEstimator, name)
        for stored in _instances(loaded, _StoredEstimator)
    }
    return copy.deepcopy(loaded, models)


def _unreadable_pipeline(data: bytes) -> str | None:
    """Why ``data`` cannot be a skops archive, or None."""
    if not data:
        return "the file is empty"
    if not zipfile.is_zipfile(io.BytesIO(data)):
        if data[:1] == pickle.PROTO:
            return f"it holds pickled Python objects, as pickle and joblib write them, {_UNPICKLED}"
        return "it is not a zip archive: damaged, truncated or another kind of file"
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
    if "schema.json" in names:
        return None
    if any(entry.endswith("/data.pkl") for entry in names):
        return (
            "it is a torch file, as M4SurvivalEstimator.save writes them; read a model file "
            "with M4SurvivalEstimator.load"
        )
    return "it is a zip archive without skops' schema.json"


@functools.cache
def _allowed_types() -> frozenset[str]:
    """Full names of the types load_pipeline builds beyond skops' own defaults.

    skops trusts scikit-learn's estimators, numpy arrays, random states and
    builtin containers itself; scikit-learn's internal tree storage stays out,
    as skops keeps it out, since its node indices are used unchecked.
    """
    # what fitted scikit-survival estimators and ColumnTransformers hold beside estimators
    holders = (np.dtype, StepFunction, BreslowEstimator, make_column_selector, _StoredEstimator)
    names = {_type_name(t) for t in holders}
    for module_name in (*_SKSURV_NAMESPACES, *_SKSURVFUSION_MODULES):
        for obj in vars(importlib.import_module(module_name)).values():
            if (
                isinstance(obj, type)
                and issubclass(obj, BaseEstimator)
                and obj.__module__.startswith(("sksurv.", "sksurvfusion."))
            ):
                names.add(_type_name(obj))
    return frozenset(names)


def _refused_types(found: list[str], trusted: list[str]) -> list[str]:
    return sorted(set(found) - _allowed_types() - set(trusted))


def _type_name(kind: type) -> str:
    # the name skops records for a type
    return f"{kind.__module__}.{kind.__name__}"


def _type_names(kinds: Sequence[str | type] | None) -> list[str]:
    if kinds is None:
        return []
    if isinstance(kinds, (str, type)) or not isinstance(kinds, Iterable):
        kinds = [kinds]
    kinds = list(kinds)
    if not all(isinstance(kind, (str, type)) for kind in kinds):
        raise TypeError(
            f"trusted must be a list of types or of their full names, got {kinds!r}; "
            "no value of trusted trusts every type"
        )
    return [kind if isinstance(kind, str) else _type_name(kind) for kind in kinds]


def _instances(obj, kind: type) -> list:
    """Every object of type ``kind`` reachable from ``obj`` through containers and
    attributes, each once."""
    found, seen, pending = [], set(), [obj]
    while pending:
        item = pending.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if type(item) is kind:
            found.append(item)
        elif isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            pending.extend(item)
        elif isinstance(item, np.ndarray):
            if item.dtype == object:
                pending.extend(item.flat)
        elif not isinstance(item, (type, types.ModuleType)) and hasattr(item, "__dict__"):
            pending.extend(vars(item).values())
    return found


def _skops_io(caller: str):
    try:
        import skops.io
    except ImportError as exc:
        raise ImportError(
            f"{caller} needs the skops package, which sksurvfusion installs with its skops "
            "extra: pip install 'sksurvfusion[skops]'"
        ) from exc
    return skops.io
