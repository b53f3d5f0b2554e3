"""The built wheel: it carries the licence, declares the console script, and installs and
runs outside the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    # with build isolation: pip fetches the build backend pyproject.toml asks for
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                            str(ROOT), "-w", str(out)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    (path,) = out.glob("aekit-*.whl")
    return path


def test_the_wheel_carries_the_licence_and_the_console_script(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        licence = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert licence, names
        assert "BSD 3-Clause License" in z.read(licence[0]).decode()
        entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "aekit = aekit.cli:main" in z.read(entry).decode()
        assert any(n == "aekit/estimator/base.py" for n in names)
        assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)


def test_the_wheel_installs_and_its_command_runs_outside_the_source_tree(wheel, tmp_path):
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q",
                              "--target", str(target), str(wheel)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run([sys.executable, "-c", "import aekit; print(aekit.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert where.returncode == 0 and where.stdout.startswith(str(target)), where.stderr
    script = target / "bin" / "aekit"
    run = subprocess.run([str(script), "models"], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "vae" in run.stdout.split()
