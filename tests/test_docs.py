"""The documentation site: it builds in quick mode with warnings as errors, every lecture
chapter runs and has figures, the references cover the public API and the command line,
and a headless browser finds no broken image or link.

The build runs on a copy of ``docs/`` (sphinx-gallery writes into its source folder), with
``AEKIT_DOCS_QUICK=1`` (few epochs and rows) and ``-W --keep-going``: a warning, a broken
cross-reference or a tutorial that raises fails it. ``make docs`` is the full build.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import aekit

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
NEEDED = ["sphinx", "sphinx_gallery", "numpydoc", "furo", "myst_parser", "sphinxarg",
          "matplotlib"]
MISSING = [name for name in NEEDED if importlib.util.find_spec(name) is None]
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f"the docs build needs {', '.join(MISSING)}: "
    "pip install -e '.[docs]' (make test installs them with .[dev])")

CHAPTERS = sorted(p.stem for p in (DOCS / "tutorials").glob("chapter_*.py"))
GENERATED = ("_build", "auto_tutorials", "generated", "sg_execution_times.rst")


def sphinx_build(source: Path, out: Path, **env: str) -> subprocess.CompletedProcess:
    """``sphinx-build -W --keep-going`` of ``source`` into ``out/html``, quick mode."""
    environ = {**os.environ, "AEKIT_DOCS_QUICK": "1", "OMP_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg", **env}
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q",
         "-d", str(out / "doctrees"), str(source), str(out / "html")],
        capture_output=True, text=True, env=environ, timeout=600)


def copy_docs(to: Path) -> Path:
    shutil.copytree(DOCS, to, ignore=shutil.ignore_patterns(*GENERATED, "__pycache__"))
    return to


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("docs")
    build = sphinx_build(copy_docs(tmp / "src"), tmp / "out")
    assert build.returncode == 0, f"the docs build failed:\n{build.stderr[-6000:]}"
    assert build.stderr.strip() == "", build.stderr[-6000:]
    return tmp / "out" / "html"


def test_every_chapter_runs_and_shows_figures_made_at_build_time(site):
    assert len(CHAPTERS) >= 4, CHAPTERS
    for chapter in CHAPTERS:
        page = (site / "auto_tutorials" / f"{chapter}.html").read_text()
        figures = re.findall(rf'src="(\.\./_images/sphx_glr_{chapter}_\d+\.png)"', page)
        assert figures, f"{chapter} shows no figure"
        for figure in figures:
            assert (site / "auto_tutorials" / figure).resolve().stat().st_size > 2000
        assert "Traceback" not in page, chapter


def test_every_chapter_has_a_korean_page_that_links_to_it(site):
    for chapter in CHAPTERS:
        number = chapter.split("_")[1]
        page = (site / "ko" / f"chapter_{number}.html").read_text()
        assert len(re.findall(r"[\uac00-\ud7a3]", page)) > 300, f"{chapter}: no Korean text"
        assert f'href="../auto_tutorials/{chapter}.html"' in page, chapter


def test_the_api_reference_covers_every_public_name(site):
    pages = {p.stem for p in (site / "api" / "generated").glob("*.html")}
    modules = {"datasets", "distributions", "evaluation", "__version__"}
    for name in set(aekit.__all__) - modules:
        assert f"aekit.{name}" in pages, f"no API page for aekit.{name}"
    for name in set(aekit.evaluation.__all__) - {"ACTIVE_UNIT_THRESHOLD"}:
        home = getattr(aekit.evaluation, name).__module__   # where a re-export is documented
        assert {f"aekit.evaluation.{name}", f"{home}.{name}"} & pages, name
    assert "aekit.data.datasets.load" in pages
    for name in aekit.list_models():
        assert type(aekit.get_model(name)).__name__ in {p.split(".")[-1] for p in pages}


def test_the_hook_table_lists_every_hook_of_the_base_class(site):
    from aekit.estimator import BaseAutoencoder

    page = (site / "api" / "authors.html").read_text()
    # the first cell of each row of the table
    hooks = re.findall(r'<tr[^>]*>\s*<td><p><code[^>]*><span class="pre">(_\w+)', page)
    assert {"_build", "_loss", "_encode", "_decode", "_log_likelihood",
            "_train_step"} <= set(hooks), hooks
    for hook in hooks:
        assert hasattr(BaseAutoencoder, hook), \
            f"the hook table names {hook}, which BaseAutoencoder does not declare"


def test_the_cli_reference_has_every_subcommand_from_the_parser(site):
    from aekit.cli.main import build_parser

    page = (site / "cli.html").read_text()
    (sub,) = [a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction"]
    for command, parser in sub.choices.items():
        assert f"aekit {command}" in page, command
        for action in parser._actions:
            for option in set(action.option_strings) - {"-h", "--help"}:
                assert option in page, f"aekit {command} {option}"


def test_a_warning_or_a_raising_tutorial_fails_the_build(tmp_path):
    source = copy_docs(tmp_path / "src")
    (source / "tutorials" / "chapter_9_raises.py").write_text(
        '"""\n9. Raises\n=========\n\nA chapter that fails.\n"""\n\nraise RuntimeError("boom")\n')
    (source / "howto" / "own_data.md").write_text(
        "# Your own data\n\nSee {doc}`/no/such/page`.\n")
    # only the raising script runs, so this build is short
    build = sphinx_build(source, tmp_path / "out", AEKIT_DOCS_ONLY="chapter_9")
    assert build.returncode != 0
    assert "boom" in build.stderr and "no/such/page" in build.stderr


CHROMIUM = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# appended to a copy of a page: once it has loaded, the count of images that did not load
COUNT_BROKEN = ("<script>window.addEventListener('load', () => document.body.setAttribute("
                "'data-broken-images', [...document.images].filter(i => !i.complete || "
                "i.naturalWidth === 0).length));</script>")


def broken_images(page: Path, tmp: Path) -> int:
    probe = page.with_name(f"probe-{page.name}")
    probe.write_text(page.read_text().replace("</body>", COUNT_BROKEN + "</body>"))
    done = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp / 'profile'}",
                           "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                          capture_output=True, text=True, timeout=60)
    probe.unlink()
    found = re.search(r'data-broken-images="(\d+)"', done.stdout)
    assert found, done.stdout[:500] + done.stderr[-500:]
    return int(found[1])


def broken_links(page: Path, site: Path) -> list[str]:
    bad = []
    for link in re.findall(r'(?:href|src)="([^"#?]+)[^"]*"', page.read_text()):
        if re.match(r"[a-z]+:", link):
            continue
        target = (page.parent / link).resolve()
        if not target.exists() or site.resolve() not in target.parents:
            bad.append(link)
    return bad


@pytest.mark.skipif(CHROMIUM is None, reason="headless browser test needs chromium "
                    "(Debian: apt-get install chromium)")
def test_index_and_a_chapter_render_with_no_broken_image_or_link(site, tmp_path):
    pages = [site / "index.html", site / "auto_tutorials" / f"{CHAPTERS[0]}.html"]
    for page in pages:
        assert broken_links(page, site) == [], page
        assert broken_images(page, tmp_path) == 0, page
    # the check sees a missing figure
    copy = tmp_path / "site"
    shutil.copytree(site, copy)
    chapter = copy / "auto_tutorials" / f"{CHAPTERS[0]}.html"
    figure = re.search(r'src="(\.\./_images/sphx_glr_[^"]+\.png)"', chapter.read_text())[1]
    (chapter.parent / figure).resolve().unlink()
    assert broken_images(chapter, tmp_path) == 1
    assert figure in broken_links(chapter, copy)
