"""Sphinx configuration of the sksurvfusion documentation.

Build with ``python -m sphinx -W -b html docs docs/_build/html`` after
``pip install -e ".[docs]"``. The build needs no network: the intersphinx inventories of
the projects it links to are written from the installed packages
(``sphinxext/local_inventories.py``), and the gallery runs ``examples/plot_*.py``.
"""

import os
import sys
from pathlib import Path

import torch

import sksurvfusion

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE / "sphinxext"))

from local_inventories import intersphinx_mapping as _local_inventories  # noqa: E402

# Examples and figures run on the CPU with a non-interactive backend, whatever the machine.
os.environ.setdefault("MPLBACKEND", "Agg")
# The example networks are small: one torch thread runs them as fast as two, and on a
# machine shared with other jobs several threads spin against each other for seconds.
torch.set_num_threads(1)

project = "sksurvfusion"
author = "sksurvfusion developers"
copyright = "sksurvfusion developers, BSD-3-Clause"
release = sksurvfusion.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    # a copy of MathJax in _static: the formulas render without a CDN (offline, or
    # behind a hospital firewall)
    "sphinx-mathjax-offline",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "matplotlib.sphinxext.plot_directive",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "sphinxext", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
default_role = "obj"
pygments_style = "sphinx"

# -- API pages -----------------------------------------------------------------------
autosummary_generate = True
autodoc_typehints = "none"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "inherited-members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = True
numpydoc_xref_aliases = {
    "DataFrame": "pandas.DataFrame",
    "Series": "pandas.Series",
    "ndarray": "numpy.ndarray",
    "Tensor": "torch.Tensor",
    "Module": "torch.nn.Module",
    "Pipeline": "sklearn.pipeline.Pipeline",
    "GridSearchCV": "sklearn.model_selection.GridSearchCV",
    "RandomizedSearchCV": "sklearn.model_selection.RandomizedSearchCV",
    "RandomState": "numpy.random.RandomState",
    "StepFunction": "sksurv.functions.StepFunction",
    "Axes": "matplotlib.axes.Axes",
    "M4SurvivalEstimator": "sksurvfusion.M4SurvivalEstimator",
    "ModalityPreprocessor": "sksurvfusion.baselines.ModalityPreprocessor",
    "ConcordanceIndexCI": "sksurvfusion.metrics.ConcordanceIndexCI",
}
numpydoc_xref_ignore = {
    "of",
    "or",
    "and",
    "to",
    "shape",
    "default",
    "optional",
    "instance",
    "fitted",
    "estimator",
    "path-like",
    "array-like",
    "sequence",
    "sequences",
    "callable",
    "n_samples",
    "n_features",
    "n_features_out",
    "n_unique_times",
    "n_modalities",
    "n_group_modalities",
    "batch",
    "length",
    "d_model",
    "in",
    "skorch",
    "callbacks",
    "a",
    "the",
    "with",
    "as",
    "by",
    "None",
    "True",
    "False",
    "bool",
    "int",
    "float",
    "str",
    "dict",
    "list",
    "tuple",
}

# -- Links to other projects, from local inventories (no download) ---------------------
intersphinx_mapping = _local_inventories(HERE / "_build" / "inventories")
intersphinx_timeout = 1

# -- Gallery ---------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "gallery_order.ExampleOrder",
    "doc_module": ("sksurvfusion",),
    "backreferences_dir": "generated/backreferences",
    "reset_modules": ("matplotlib",),
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_signature": False,
    "min_reported_time": 1,
    "default_thumb_file": None,
}

# -- Figures made by scripts under docs/ (the architecture) -----------------------------
plot_basedir = str(HERE)
plot_include_source = False
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 144)]
plot_rcparams = {"savefig.bbox": "tight"}

# -- HTML ------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"sksurvfusion {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_show_sourcelink = False
html_theme_options = {
    "navbar_align": "left",
    "header_links_before_dropdown": 6,
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {"index": [], "install": [], "benchmarks": [], "design_notes": []}
