"""Docstrings and documentation pages: every public name has a runnable example that runs.

- every public class and function (the ``__all__`` of each public module) has an
  Examples section;
- the doctests of every module of the package pass;
- every public name is listed in ``docs/api.rst``, so that it gets an API page;
- the Python code blocks of the user-guide pages run, in order, page by page.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
import re
import textwrap
import warnings
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pytest
import torch

import sksurvfusion

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"


def _is_public(name: str) -> bool:
    return not any(part.startswith("_") for part in name.split("."))


def _all_modules() -> list[str]:
    """Every module of the package, private ones included (their doctests run too)."""
    names = ["sksurvfusion"]
    for info in pkgutil.walk_packages(sksurvfusion.__path__, "sksurvfusion."):
        if not info.name.endswith(".__main__"):  # importing it runs the command line
            names.append(info.name)
    return sorted(names)


PUBLIC_MODULES = [name for name in _all_modules() if _is_public(name)]


def _public_objects():
    """``(qualified name, object)`` of every class and function in a public ``__all__``,
    each object once, named where it is defined."""
    seen = {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            seen.setdefault(id(obj), (f"{obj.__module__}.{obj.__qualname__}", obj))
    return sorted(seen.values(), key=lambda item: item[0])


PUBLIC_OBJECTS = _public_objects()


def _has_examples(obj) -> bool:
    return re.search(r"^Examples\n-{8,}$", inspect.getdoc(obj) or "", re.MULTILINE) is not None


@pytest.mark.parametrize("qualname, obj", PUBLIC_OBJECTS, ids=[name for name, _ in PUBLIC_OBJECTS])
def test_public_name_has_examples(qualname, obj):
    assert _has_examples(obj), f"{qualname} has no Examples section"


@pytest.fixture
def quiet_figures(monkeypatch):
    """Doctests and pages draw on a non-interactive backend and leave no figure open."""
    backend = matplotlib.get_backend()
    plt.switch_backend("Agg")
    monkeypatch.setattr(plt, "show", lambda *args, **kwargs: None)
    yield
    plt.close("all")
    plt.switch_backend(backend)


@pytest.fixture
def one_thread():
    """The example networks are small: one torch thread runs them as fast as several, and
    does not spin against other jobs on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("module_name", _all_modules())
def test_doctests(module_name, quiet_figures, one_thread):
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(
        optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS, verbose=False
    )
    tests = [t for t in finder.find(module, module_name) if t.examples]
    # objects imported from elsewhere are tested in their own module
    tests = [t for t in tests if _defined_in(t, module)]
    if not tests:
        pytest.skip(f"{module_name} has no doctests")
    report = []
    for test in tests:
        result = runner.run(test, out=report.append)
        assert result.failed == 0, f"{test.name}:\n{''.join(report)}"


def _defined_in(test: doctest.DocTest, module) -> bool:
    return test.filename is None or Path(test.filename) == Path(module.__file__)


def _api_names() -> set[str]:
    """Names listed in the autosummary tables of docs/api.rst, fully qualified."""
    names, current = set(), None
    for line in (DOCS / "api.rst").read_text().splitlines():
        match = re.match(r"\.\. currentmodule:: (\S+)", line)
        if match:
            current = match.group(1)
        elif current and re.match(r"^   [A-Za-z_]\w*$", line):
            names.add(f"{current}.{line.strip()}")
    return names


def test_api_page_lists_every_public_name():
    listed = _api_names()
    documented_modules = {name.rsplit(".", 1)[0] for name in listed}
    missing = []
    for module_name in sorted(documented_modules):
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            # listed once, under any documented module that exports it
            if not any(f"{m}.{name}" in listed for m in documented_modules):
                missing.append(f"{module_name}.{name}")
    assert not missing, f"add these to docs/api.rst: {missing}"


# ------------------------------------------------------------------- guide pages
def _code_blocks(text: str) -> list[str]:
    """The Python code of a page, in order: ``code-block:: python`` and ``plot::``
    directives with content, except blocks marked ``:class: skip-test`` (they need a
    cluster or a module of the reader's own)."""
    lines, blocks, i = text.splitlines(), [], 0
    while i < len(lines):
        if re.match(r"^\.\. (code-block:: python|plot::)\s*$", lines[i]):
            i += 1
            options = []
            while i < len(lines) and re.match(r"^\s+:[\w-]+:", lines[i]):
                options.append(lines[i].strip())
                i += 1
            body = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith("   ")):
                body.append(lines[i])
                i += 1
            if ":class: skip-test" not in options and "".join(body).strip():
                blocks.append(textwrap.dedent("\n".join(body)))
        else:
            i += 1
    return blocks


PAGES = sorted(
    page.relative_to(DOCS).as_posix()
    for page in [DOCS / "index.rst", DOCS / "install.rst", *(DOCS / "guide").glob("*.rst")]
    if _code_blocks(page.read_text())
)


@pytest.mark.parametrize("page", PAGES)
def test_guide_page_runs(page, quiet_figures, one_thread, capsys):
    namespace = {"__name__": "__main__"}
    with warnings.catch_warnings():
        # the pages show some warnings on purpose (a one-modality table)
        warnings.simplefilter("ignore", UserWarning)
        for block in _code_blocks((DOCS / page).read_text()):
            exec(compile(block, str(DOCS / page), "exec"), namespace)
    assert capsys.readouterr().out
