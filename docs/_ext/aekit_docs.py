"""Sphinx helpers for aekit's documentation.

- ``.. hook-table::`` renders the hook table of ``aekit/estimator/base.py``'s module
  docstring (the contract a model author writes to) as a table, read from the docstring
  at build time so that the page and the code cannot disagree.
- ``quick_mode_quiet`` runs before each tutorial: in the quick build (few epochs, on
  purpose too few to converge) it hides ``ConvergenceWarning``, which would only say so.
- ``repair_docstring`` quotes a fitted-attribute name such as ``labels_`` written
  outside literal quotes in a docstring's prose, as reStructuredText would read its
  trailing underscore as a link.
"""

from __future__ import annotations

import os
import re
import warnings

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

#: a row of the hook table: the hook in literal quotes, then its contract
HOOK_ROW = re.compile(r"^(``[^`]+``)\s+(.*)$")
#: a name ending in an underscore, outside literal quotes (an rST link otherwise)
TRAILING_UNDERSCORE = re.compile(r"(?<![`\w])([A-Za-z]\w*_)(?=[\s).,;:]|$)")


def hook_rows(doc: str) -> list[tuple[str, str]]:
    """(hook, contract) pairs from the first simple table in ``doc``."""
    lines = doc.splitlines()
    rules = [i for i, line in enumerate(lines) if line.startswith("====")]
    if len(rules) < 3:
        raise ValueError("no hook table (three rules of '=') in aekit.estimator.base's "
                         "docstring")
    rows: list[tuple[str, str]] = []
    for line in lines[rules[1] + 1:rules[2]]:
        match = HOOK_ROW.match(line)
        if match:
            rows.append((match[1], match[2].strip()))
        elif line.strip() and rows:
            hook, text = rows[-1]
            rows[-1] = (hook, f"{text} {line.strip()}")
    return rows


class HookTable(SphinxDirective):
    """The model author's hook table, from ``aekit.estimator.base.__doc__``."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        from aekit.estimator import base

        rows = hook_rows(base.__doc__ or "")
        text = [".. list-table::", "   :header-rows: 1", "   :widths: 30 70", "",
                "   * - hook", "     - contract (who calls it, when)"]
        for hook, contract in rows:
            text += [f"   * - {hook}", f"     - {contract}"]
        container = nodes.container()
        self.state.nested_parse(StringList(text, source="aekit.estimator.base"), 0,
                                container)
        return container.children


def quick_mode_quiet(gallery_conf, fname, when) -> None:
    if os.environ.get("AEKIT_DOCS_QUICK"):
        from sklearn.exceptions import ConvergenceWarning

        warnings.filterwarnings("ignore", category=ConvergenceWarning)


def repair_docstring(app, what, name, obj, options, lines: list[str]) -> None:
    literal_indent = None  # the indentation of the paragraph that opened a literal block
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if literal_indent is not None:
            if not stripped or indent > literal_indent:
                continue
            literal_indent = None
        if stripped.startswith((">>>", "...")):
            continue
        if stripped.endswith("::"):
            literal_indent = indent
        lines[i] = TRAILING_UNDERSCORE.sub(r"``\1``", line)


def setup(app):
    app.add_directive("hook-table", HookTable)
    # before numpydoc (priority 500), which parses the repaired lines
    app.connect("autodoc-process-docstring", repair_docstring, priority=400)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
