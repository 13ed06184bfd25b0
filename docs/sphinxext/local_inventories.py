"""Intersphinx inventories written from the installed packages, so that the build is offline.

Intersphinx normally downloads each project's ``objects.inv``. Here the inventory of
scikit-learn, scikit-survival, skorch, PyTorch, NumPy and pandas is written from the
packages installed beside the docs: their public classes and functions (and the methods
of the classes), each mapped to the page of the project's online documentation where it
is described. ``conf.py`` points ``intersphinx_mapping`` at the files, so that
``:class:`~sklearn.pipeline.Pipeline``` in a docstring links to scikit-learn's page and
no build opens a connection.

A file is written again only when the installed version of its package changes.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import sphobjinv as soi

# raised whenever this module changes what it writes, so that old files are rewritten
_INVENTORY_FORMAT = 3

# (name, role, uri); uri relative to the project's base url, "$" standing for the name
Entry = tuple[str, str, str]


@dataclass(frozen=True)
class Project:
    """One external project: where its documentation lives and how it names pages."""

    name: str
    package: str
    base_url: str
    namespaces: Callable[[], Iterable[str]]
    page: Callable[[str, str], str | None]
    # attributes kept when a namespace has no __all__: objects defined in these packages
    owners: tuple[str, ...] = ()
    methods: bool = True
    # entries written by hand: (name, "domain:role", uri), e.g. glossary terms
    extra: tuple[tuple[str, str, str], ...] = ()


def _public(name: str) -> bool:
    return not any(part.startswith("_") for part in name.split("."))


def _walk(package: str, skip: tuple[str, ...] = ()) -> Iterator[str]:
    yield package
    module = importlib.import_module(package)
    for info in pkgutil.walk_packages(module.__path__, package + "."):
        name = info.name
        if _public(name) and not any(part in skip for part in name.split(".")):
            yield name


def _names(module, owners: tuple[str, ...]) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is not None:
        return [n for n in names if isinstance(n, str) and _public(n)]
    kept = []
    for name, obj in vars(module).items():
        if not _public(name) or not (inspect.isclass(obj) or callable(obj)):
            continue
        if str(getattr(obj, "__module__", "") or "").startswith(owners):
            kept.append(name)
    return kept


def _role(obj) -> str | None:
    if inspect.isclass(obj):
        return "class"
    if inspect.ismodule(obj):
        return None
    if callable(obj):
        return "function"
    return None


def _members(cls) -> Iterator[tuple[str, str]]:
    for name in dir(cls):
        if name.startswith("_"):
            continue
        try:
            attr = inspect.getattr_static(cls, name)
        except AttributeError:
            continue
        if isinstance(attr, property):
            yield name, "attribute"
        elif callable(attr) or isinstance(attr, (classmethod, staticmethod)):
            yield name, "method"


def entries(project: Project) -> list[Entry]:
    """Every public class, function and method of ``project`` with its page."""
    found: dict[tuple[str, str], str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for namespace in project.namespaces():
            try:
                module = importlib.import_module(namespace)
            except Exception:  # an optional dependency of that module is not installed
                continue
            page = project.page(namespace, "module")
            if page is not None:
                found.setdefault((namespace, "module"), page)
            for name in _names(module, project.owners or (project.package,)):
                obj = getattr(module, name, None)
                role = _role(obj)
                if role is None:
                    continue
                full = f"{namespace}.{name}"
                page = project.page(full, role)
                if page is None:
                    continue
                found.setdefault((full, role), page)
                if role == "class" and project.methods:
                    for member, kind in _members(obj):
                        target = project.page(f"{full}.{member}", kind)
                        if target is not None:
                            found.setdefault((f"{full}.{member}", kind), target)
    return [(name, role, uri) for (name, role), uri in sorted(found.items())]


def _anchor(page: str, name: str) -> str:
    return f"{page}#{name}"


# ----------------------------------------------------------------------- projects
def _sklearn_page(name: str, role: str) -> str | None:
    if role == "module":
        return f"api/{name}.html#module-{name}"
    owner = name if role in ("class", "function") else name.rsplit(".", 1)[0]
    return _anchor(f"modules/generated/{owner}.html", name)


_SKSURV_NAMESPACES = (
    "sksurv.base",
    "sksurv.column",
    "sksurv.compare",
    "sksurv.datasets",
    "sksurv.ensemble",
    "sksurv.functions",
    "sksurv.io",
    "sksurv.kernels",
    "sksurv.linear_model",
    "sksurv.meta",
    "sksurv.metrics",
    "sksurv.nonparametric",
    "sksurv.preprocessing",
    "sksurv.svm",
    "sksurv.tree",
    "sksurv.util",
)


def _sksurv_page(name: str, role: str) -> str | None:
    if role == "module":
        return "api/index.html"
    owner = name if role in ("class", "function") else name.rsplit(".", 1)[0]
    return _anchor(f"api/generated/{owner}.html", name)


_NUMPY_SCALARS = {
    "bool",
    "bool_",
    "byte",
    "bytes_",
    "cdouble",
    "clongdouble",
    "complex64",
    "complex128",
    "complexfloating",
    "csingle",
    "datetime64",
    "double",
    "float16",
    "float32",
    "float64",
    "floating",
    "generic",
    "half",
    "inexact",
    "int8",
    "int16",
    "int32",
    "int64",
    "intc",
    "integer",
    "intp",
    "long",
    "longdouble",
    "longlong",
    "number",
    "object_",
    "short",
    "signedinteger",
    "single",
    "str_",
    "timedelta64",
    "ubyte",
    "uint",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "uintc",
    "uintp",
    "ulong",
    "ulonglong",
    "unsignedinteger",
    "ushort",
    "void",
}
_NUMPY_RANDOM_PAGES = {
    "Generator": "reference/random/generator.html",
    "default_rng": "reference/random/generator.html",
    "RandomState": "reference/random/legacy.html",
    "SeedSequence": "reference/random/bit_generators/generated/numpy.random.SeedSequence.html",
}


def _numpy_page(name: str, role: str) -> str | None:
    parts = name.split(".")
    if role == "module":
        return {
            "numpy": "reference/index.html",
            "numpy.random": "reference/random/index.html#module-numpy.random",
            "numpy.linalg": "reference/routines.linalg.html#module-numpy.linalg",
        }.get(name)
    if parts[:2] == ["numpy", "random"]:
        if len(parts) == 3 and parts[2] in _NUMPY_RANDOM_PAGES:
            return _anchor(_NUMPY_RANDOM_PAGES[parts[2]], name)
        if len(parts) == 4 and parts[2] in ("Generator", "RandomState"):
            return _anchor(f"reference/random/generated/{name}.html", name)
        if len(parts) == 3 and role == "function":
            return _anchor(f"reference/random/generated/{name}.html", name)
        return None
    if len(parts) == 2 and parts[1] in _NUMPY_SCALARS:
        return _anchor("reference/arrays.scalars.html", name)
    if len(parts) == 3 and parts[1] in _NUMPY_SCALARS:
        return None
    if parts[:2] == ["numpy", "ndarray"] or parts[:2] == ["numpy", "dtype"]:
        return _anchor(f"reference/generated/{name}.html", name)
    if len(parts) == 3 and role in ("method", "attribute") and parts[0] == "numpy":
        return None  # methods of other numpy classes are not pages of their own
    return _anchor(f"reference/generated/{name}.html", name)


def _pandas_page(name: str, role: str) -> str | None:
    if role == "module":
        return {
            "pandas": "reference/index.html",
            "pandas.api.types": "reference/arrays.html#api-arrays-dtype",
        }.get(name)
    # pandas gives every function, class, method and property a page of its own
    return _anchor(f"reference/api/{name}.html", name)


_TORCH_PAGES = {
    "torch.Tensor": "tensors.html",
    "torch.device": "tensor_attributes.html",
    "torch.dtype": "tensor_attributes.html",
    "torch.layout": "tensor_attributes.html",
    "torch.memory_format": "tensor_attributes.html",
}
_TORCH_MODULES = {
    "torch": "torch.html#module-torch",
    "torch.nn": "nn.html#module-torch.nn",
    "torch.nn.functional": "nn.functional.html#module-torch.nn.functional",
    "torch.optim": "optim.html#module-torch.optim",
    "torch.utils.data": "data.html#module-torch.utils.data",
    "torch.cuda": "cuda.html#module-torch.cuda",
}


def _torch_page(name: str, role: str) -> str | None:
    if role == "module":
        return _TORCH_MODULES.get(name)
    if name in _TORCH_PAGES:
        return _anchor(_TORCH_PAGES[name], name)
    parts = name.split(".")
    if name.startswith("torch.utils.data."):
        return _anchor("data.html", name)
    if name.startswith("torch.Tensor."):
        return _anchor(f"generated/{name}.html", name)
    if role in ("method", "attribute"):
        owner = name.rsplit(".", 1)[0]
        # torch documents the methods of its classes on the class's page
        return _anchor(f"generated/{owner}.html", name) if len(parts) > 2 else None
    return _anchor(f"generated/{name}.html", name)


_SKORCH_PAGES = {
    "skorch": "net.html",
    "skorch.net": "net.html",
    "skorch.callbacks": "callbacks.html",
    "skorch.dataset": "dataset.html",
    "skorch.helper": "helper.html",
    "skorch.history": "history.html",
    "skorch.utils": "utils.html",
}


def _skorch_page(name: str, role: str) -> str | None:
    if role == "module":
        page = _SKORCH_PAGES.get(name)
        return None if page is None else f"{page}#module-{name}"
    parts = name.split(".")
    depth = 2 if role in ("class", "function") else 3
    namespace = ".".join(parts[: len(parts) - depth + 1])
    page = _SKORCH_PAGES.get(namespace)
    if page is None:
        return None
    if namespace == "skorch":
        # the top-level names are documented at their defining modules
        anchor = name.replace("skorch.", "skorch.net.", 1)
        if parts[1] == "History":
            return _anchor("history.html", name.replace("skorch.", "skorch.history.", 1))
        return _anchor(page, anchor)
    return _anchor(page, name)


_PY_FUNCTIONS = ("callable", "isinstance", "len", "print")
# classes documented among the built-in functions
_PY_FUNCTION_CLASSES = ("bool", "complex", "float", "int", "object", "slice", "type")
_PY_TYPES = ("bytes", "dict", "frozenset", "list", "range", "set", "str", "tuple")
_PY_EXCEPTIONS = (
    "Exception",
    "FileNotFoundError",
    "ImportError",
    "KeyError",
    "OSError",
    "RuntimeError",
    "TypeError",
    "UserWarning",
    "ValueError",
    "FloatingPointError",
    "NotImplementedError",
    "SystemExit",
    "Warning",
)
_PY_TERMS = ("sequence", "iterable", "generator", "mapping", "hashable", "path-like object")
_PYTHON_EXTRA = (
    tuple((n, "py:function", f"library/functions.html#{n}") for n in _PY_FUNCTIONS)
    + tuple((n, "py:class", f"library/functions.html#{n}") for n in _PY_FUNCTION_CLASSES)
    + tuple((n, "py:class", f"library/stdtypes.html#{n}") for n in _PY_TYPES)
    + tuple((n, "py:exception", f"library/exceptions.html#{n}") for n in _PY_EXCEPTIONS)
    + tuple((n, "py:data", f"library/constants.html#{n}") for n in ("None", "True", "False"))
    + tuple((t, "std:term", f"glossary.html#term-{t.replace(' ', '-')}") for t in _PY_TERMS)
    + (
        ("bltin-boolean-values", "std:label", "library/stdtypes.html#bltin-boolean-values"),
        ("pathlib.Path", "py:class", "library/pathlib.html#pathlib.Path"),
        ("os.PathLike", "py:class", "library/os.html#os.PathLike"),
        (
            "collections.namedtuple",
            "py:function",
            "library/collections.html#collections.namedtuple",
        ),
        (
            "contextlib.contextmanager",
            "py:function",
            "library/contextlib.html#contextlib.contextmanager",
        ),
        ("dataclasses.dataclass", "py:function", "library/dataclasses.html#dataclasses.dataclass"),
        ("pickle", "py:module", "library/pickle.html#module-pickle"),
    )
)
_NUMPY_EXTRA = (
    ("array_like", "std:term", "glossary.html#term-array_like"),
    ("arrays.scalars", "std:label", "reference/arrays.scalars.html#arrays-scalars"),
    ("numpy.nan", "py:data", "reference/constants.html#numpy.nan"),
    ("numpy.inf", "py:data", "reference/constants.html#numpy.inf"),
)

PROJECTS = (
    Project(
        "python",
        "builtins",
        "https://docs.python.org/3/",
        lambda: (),
        lambda name, role: None,
        extra=_PYTHON_EXTRA,
    ),
    Project(
        "sklearn",
        "sklearn",
        "https://scikit-learn.org/stable/",
        lambda: _walk("sklearn", skip=("tests", "externals")),
        _sklearn_page,
    ),
    Project(
        "sksurv",
        "sksurv",
        "https://scikit-survival.readthedocs.io/en/stable/",
        lambda: _SKSURV_NAMESPACES,
        _sksurv_page,
    ),
    Project(
        "skorch",
        "skorch",
        "https://skorch.readthedocs.io/en/stable/",
        lambda: tuple(_SKORCH_PAGES),
        _skorch_page,
    ),
    Project(
        "torch",
        "torch",
        "https://docs.pytorch.org/docs/stable/",
        lambda: (*_TORCH_MODULES, "torch.optim.lr_scheduler", "torch.optim.swa_utils"),
        _torch_page,
    ),
    Project(
        "numpy",
        "numpy",
        "https://numpy.org/doc/stable/",
        lambda: ("numpy", "numpy.random", "numpy.linalg"),
        _numpy_page,
        extra=_NUMPY_EXTRA,
    ),
    Project(
        "pandas",
        "pandas",
        "https://pandas.pydata.org/docs/",
        lambda: ("pandas", "pandas.api.types"),
        _pandas_page,
    ),
)


def _version(project: Project) -> str:
    if project.package == "builtins":
        return ".".join(map(str, sys.version_info[:2])) + f"-{_INVENTORY_FORMAT}"
    return f"{importlib.import_module(project.package).__version__}-{_INVENTORY_FORMAT}"


def write_inventory(project: Project, path: Path) -> int:
    """Write ``project``'s inventory to ``path``; the number of objects in it."""
    version = _version(project)
    inventory = soi.Inventory()
    inventory.project = project.name
    inventory.version = version
    rows = [(name, "py", role, uri) for name, role, uri in entries(project)]
    rows += [(name, *kind.split(":"), uri) for name, kind, uri in project.extra]
    for name, domain, role, uri in rows:
        uri = uri[: -len(name)] + "$" if uri.endswith("#" + name) else uri
        inventory.objects.append(
            soi.DataObjStr(name=name, domain=domain, role=role, priority="1", uri=uri, dispname="-")
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    soi.writebytes(str(path), soi.compress(inventory.data_file(contract=True)))
    return len(inventory.objects)


def _written_version(path: Path) -> str | None:
    if not path.exists():
        return None
    try:
        return soi.Inventory(str(path)).version
    except Exception:
        return None


def intersphinx_mapping(folder: Path) -> dict[str, tuple[str, str]]:
    """Write the inventories that are missing or stale into ``folder``; the mapping."""
    mapping = {}
    for project in PROJECTS:
        path = folder / f"{project.name}.inv"
        version = _version(project)
        if _written_version(path) != version:
            write_inventory(project, path)
        mapping[project.name] = (project.base_url, str(path))
    return mapping
