"""Sphinx configuration of aekit's documentation.

``make docs`` builds it with real epochs; ``make docs-quick`` (``AEKIT_DOCS_QUICK=1``) runs
the same tutorial scripts with few epochs and rows, for the test suite.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

import aekit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

# The tutorials run in this process and train small networks: one thread is faster for
# them and keeps a shared machine steady (the test suite does the same).
torch.set_num_threads(1)

project = "aekit"
author = "the aekit authors"
copyright = "the aekit authors, BSD 3-Clause License"
version = release = aekit.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "sphinxarg.ext",
    "myst_parser",
    "aekit_docs",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "**/GALLERY_HEADER.rst",
                    "auto_tutorials/*.ipynb", "auto_tutorials/*.py", "auto_tutorials/*.zip",
                    "auto_tutorials/*.codeobj.json", "auto_tutorials/*.md5"]
templates_path = ["_templates"]
# a literal block without a language (e.g. the command line's usage lines) stays plain text
highlight_language = "none"

# The site builds offline; MathJax (formulas) is fetched by the reader's browser, and
# without a network a formula shows as its TeX source.
html_theme = "furo"
html_title = f"aekit {release}"
html_show_sourcelink = False

# Formulas: a local copy of MathJax where `make docs` could fetch one from the npm registry
# (docs/_build/mathjax), so the built site reads offline; MathJax's CDN otherwise.
MATHJAX = HERE / "_build" / "mathjax" / "node_modules" / "mathjax" / "es5"
if (MATHJAX / "tex-chtml.js").is_file():
    html_static_path = [str(MATHJAX)]
    mathjax_path = "tex-chtml.js"

autosummary_generate = True
autodoc_default_options = {"members": False, "inherited-members": False}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks: set[str] = set()
numpydoc_xref_param_type = False

myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

sphinx_gallery_conf = {
    "examples_dirs": ["tutorials"],
    "gallery_dirs": ["auto_tutorials"],
    # AEKIT_DOCS_ONLY (a regular expression) runs only the matching scripts; the others
    # are rendered without output
    "filename_pattern": os.environ.get("AEKIT_DOCS_ONLY", r"/chapter_"),
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": False,
    "only_warn_on_example_error": False,
    "plot_gallery": "True",
    "matplotlib_animations": False,
    "min_reported_time": 1,
    "show_memory": False,
    "write_computation_times": True,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib", "aekit_docs.quick_mode_quiet"),
    "backreferences_dir": None,
    # a full build after a quick one (or back) must run every script again
    "run_stale_examples": True,
}
