"""The house's rules, checked: layers import downward, models declare what they can do and
are never probed, every hook anything calls is declared, a model is one file, and only the
user's mistakes become one-line CLI errors."""

import inspect
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import aekit
from aekit.cli import main as cli_main
from aekit.estimator import BaseAutoencoder

SRC = Path(aekit.__file__).parent
#: the packages that may look inside a model: the estimator itself and the models
INSIDE = ("estimator", "models")


def _modules_outside() -> list[Path]:
    return [p for p in SRC.rglob("*.py") if p.relative_to(SRC).parts[0] not in INSIDE]


def test_the_layers_contract_holds():
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint)], cwd=SRC.parent.parent, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 kept, 0 broken" in result.stdout


PROBES = [
    re.compile(r"\bimport inspect\b|\binspect\.(signature|getattr_static|getmembers)"),
    re.compile(r"\b(hasattr|getattr)\((model|est|estimator|self\.model)\b"),
    re.compile(r"\bisinstance\((model|est|estimator)\b"),
    re.compile(r"_score_is_density|_streaming_unsupported\b(?!\s*=)"),
]


def test_no_model_is_probed_outside_the_estimator_package():
    found = []
    for path in _modules_outside():
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if any(p.search(line) for p in PROBES) and ">>>" not in line:
                found.append(f"{path.relative_to(SRC)}:{number}: {line.strip()}")
    assert not found, "models probed instead of read from their capabilities:\n" + "\n".join(
        found)


def test_every_hook_called_from_outside_is_declared_on_the_base_class():
    called = set()
    pattern = re.compile(r"\b(?:model|est|self\.model)\.(_[a-z][a-z_]*)\(")
    for path in _modules_outside():
        called |= set(pattern.findall(path.read_text()))
    table = inspect.getmodule(BaseAutoencoder).__doc__
    missing = sorted(h for h in called if getattr(BaseAutoencoder, h, None) is None)
    undocumented = sorted(h for h in called if f"``{h}" not in table
                          and h not in ("_validate_X", "_check_support", "_map_rows",
                                        "_eval_noise", "_device", "_validate_params"))
    assert called, "the pattern found no hook calls at all"
    assert not missing, f"hooks called but not declared on BaseAutoencoder: {missing}"
    assert not undocumented, f"hooks missing from the hook table: {undocumented}"


@pytest.mark.parametrize("name", aekit.list_models())
def test_declared_capabilities_match_what_the_model_implements(name):
    cls = type(aekit.get_model(name))
    caps = cls.capabilities
    overrides = lambda hook: getattr(cls, hook) is not getattr(BaseAutoencoder, hook)  # noqa: E731
    assert caps.posterior == overrides("_posterior") == overrides("_prior")
    assert caps.conditional == ("y" in inspect.signature(cls.transform).parameters)
    assert caps.conditional == overrides("_conditions")
    if caps.importance_weights:
        assert overrides("_log_weights")
    assert caps.denoising == callable(getattr(cls, "corrupt", None))
    assert caps.semi_supervised == callable(getattr(cls, "predict", None))
    assert caps.streaming or cls._streaming_unsupported


def test_a_model_is_one_file(tmp_path):
    """A new file in models/ with an @register class is found with no other edit."""
    package = tmp_path / "aekit"
    shutil.copytree(SRC, package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / "models" / "tiny_ae.py").write_text(textwrap.dedent('''
        from aekit._registry import register
        from aekit.models.ae import AE


        @register("tiny_ae")
        class TinyAE(AE):
            """An AE registered from its own file only."""
    '''))
    code = ("import aekit; print('tiny_ae' in aekit.list_models(), "
            "type(aekit.get_model('tiny_ae')).__name__)")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300, env={"PYTHONPATH": str(tmp_path),
                                                         "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["True", "TinyAE"]


def test_models_package_names_no_model():
    init = (SRC / "models" / "__init__.py").read_text()
    assert not re.search(r"^from \.\w+ import|^from aekit\.models\.\w+ import", init, re.M)


def test_a_user_error_is_one_line_and_a_bug_keeps_its_traceback(monkeypatch, capsys, tmp_path):
    assert cli_main(["fit", "no_such_model", "--data", "digits", "-o",
                     str(tmp_path / "m.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aekit: error:") and len(err.strip().splitlines()) == 1

    def buggy(args):
        raise TypeError("a bug inside aekit")

    parser = cli_main.__globals__["build_parser"]()
    monkeypatch.setitem(cli_main.__globals__, "build_parser", lambda: parser)
    for action in parser._subparsers._group_actions[0].choices.values():
        action.set_defaults(func=buggy)
    with pytest.raises(TypeError, match="a bug inside aekit"):
        cli_main(["models"])
