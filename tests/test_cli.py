"""The command line, run in-process through ``aekit.cli.main`` (and once as ``python -m aekit``).

A user error must exit with status 2 and one ``aekit: error:`` line, no traceback, and
must leave no output file behind, not even a temporary one.
"""

import contextlib
import gzip
import io
import json
import math
import os
import re
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch

import aekit
from aekit.cli.main import main


@pytest.fixture(autouse=True)
def no_debug(monkeypatch, tmp_path):
    monkeypatch.delenv("AEKIT_DEBUG", raising=False)
    monkeypatch.setenv("AEKIT_CACHE", str(tmp_path / "cache"))


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def files_in(folder):
    """Every entry of ``folder``, hidden temporary files included."""
    return sorted(os.listdir(folder))


FIT_VAE = ["--set", "n_components=2", "--set", "max_iter=3", "--set", "hidden_layer_sizes=(16,)"]


@pytest.fixture(scope="module")
def vae_file(tmp_path_factory):
    """A VAE fitted on digits by ``aekit fit ... -q``: (path, exit code, stdout)."""
    path = tmp_path_factory.mktemp("fit") / "vae.safetensors"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["fit", "vae", "--data", "digits", "-o", str(path), *FIT_VAE, "-q"])
    return path, code, out.getvalue()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Input files for the error cases; the tests check none of them is changed."""
    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    np.save(folder / "negative.npy", -rng.random((20, 4)).astype(np.float32))
    np.save(folder / "five.npy", rng.random((20, 5)).astype(np.float32))
    (folder / "random.safetensors").write_bytes(rng.integers(0, 256, 300, np.uint8).tobytes())
    (folder / "bad.toml").write_text("n_components = \n")
    (folder / "header.csv").write_text("a,b,label\n")
    gz = gzip.compress(bytes([0, 0, 8, 2, 0, 0, 0, 50, 0, 0, 0, 20]) + bytes(1000))
    (folder / "broken-ubyte.gz").write_bytes(
        gz[:10] + rng.integers(0, 256, len(gz), np.uint8).tobytes())
    five, _ = aekit.datasets.load(folder / "five.npy")
    aekit.AE(hidden_layer_sizes=(8,), max_iter=1, random_state=0).fit(five).save(
        str(folder / "five.safetensors"))
    # issue #21: outputs that are folders, files or inputs; degenerate and crafted files
    (folder / "folder.npy").mkdir()
    (folder / "folder.safetensors").mkdir()
    (folder / "notes.txt").write_text("not a folder")
    (folder / "latin1.toml").write_bytes("n_components = 2 # tr\u00e8s\n".encode("latin-1"))
    (folder / "latin1.csv").write_bytes("a,b\n1,2\n3,\u00e9\n".encode("latin-1"))
    with open(folder / "no-values.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False,
                                                 "shape": (2**62, 0)})
    np.save(folder / "five-by-0.npy", np.zeros((5, 0), np.float32))
    (folder / "zero.npy").symlink_to("/dev/zero")
    aekit.AE(hidden_layer_sizes=(8,), max_iter=1, random_state=0).fit(
        five, checkpoint_dir=folder / "ck")
    _crafted(folder / "five.safetensors", folder / "huge.safetensors",
             lambda m: m["params"].update(hidden_layer_sizes=[10**8]))
    _crafted(folder / "five.safetensors", folder / "v999.safetensors",
             lambda m: m.update(format_version=999))
    _crafted(folder / "five.safetensors", folder / "scaled.safetensors",
             lambda m: m["params"].update(likelihood_scale=9.0), reseal=False)
    return folder


def _crafted(source, path, edit, reseal=True):
    """A copy of the model file ``source`` with its metadata edited (and the metadata
    digest recomputed, as a crafted file has it: the digest is no signature)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(source), framework="pt") as f:
        meta = json.loads(f.metadata()["aekit"])
    edit(meta)
    if reseal:
        meta["sha256"] = aekit.persistence.metadata_sha256(meta)
    save_file(load_file(str(source)), str(path), metadata={"aekit": json.dumps(meta)})


# ---------------------------------------------------------------- listing

def test_models_lists_ae_and_vae(capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()]
    assert {"ae", "vae"} <= set(names)
    assert names == aekit.list_models()


def test_datasets_lists_digits(capsys):
    code, out, _ = run(capsys, "datasets")
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert {"digits", "mnist", "fashion-mnist"} <= set(lines)
    assert "[built in]" in lines["digits"]


# -------------------------------------------------------------------- fit

def test_fit_writes_a_model_that_aekit_load_reads(vae_file):
    path, code, out = vae_file
    assert code == 0
    assert out == ""                                      # -q: no summary
    assert files_in(path.parent) == ["vae.safetensors"]   # no temporary file left
    model = aekit.load(path)
    assert isinstance(model, aekit.VAE)
    params = model.get_params()
    assert params["n_components"] == 2
    assert params["max_iter"] == 3 and model.n_iter_ == 3
    assert params["hidden_layer_sizes"] == (16,)
    assert model.n_features_in_ == 64


def test_fit_with_toml_config(capsys, tmp_path):
    config = tmp_path / "vae.toml"
    config.write_text('n_components = 3\nmax_iter = 5\nhidden_layer_sizes = [16, 8]\n'
                      'likelihood = "bernoulli"\nrandom_state = 1\n')
    path = tmp_path / "vae.safetensors"
    code, out, err = run(capsys, "fit", "vae", "--data", "digits", "--split", "test", "-o", path,
                         "--config", config, "--set", "max_iter=2", "--set", "verbose=0")
    assert code == 0, err
    assert "trained VAE on 360 rows for 2 epochs" in out and str(path) in out
    model = aekit.load(path)
    params = model.get_params()
    assert params["n_components"] == 3
    assert params["hidden_layer_sizes"] == (16, 8)
    assert params["likelihood"] == "bernoulli"
    assert params["random_state"] == 1
    assert params["max_iter"] == 2 and model.n_iter_ == 2   # --set wins over the file
    assert model.transform(aekit.datasets.load("digits", split="test")[0][:4]).shape == (4, 3)


def test_fit_warm_start_trains_a_saved_model_on(capsys, vae_file, tmp_path):
    path, _, _ = vae_file
    start = aekit.load(path)
    out_path = tmp_path / "more.safetensors"
    code, out, err = run(capsys, "fit", "--warm-start", path, "--data", "digits", "-o",
                         out_path, "--set", "max_iter=2", "--set", "learning_rate=1e-4",
                         "--set", "random_state=0")
    assert code == 0, err
    assert "trained VAE on" in out and "for 2 epochs" in out
    more = aekit.load(out_path)
    assert more.n_iter_ == 2 and more.get_params()["warm_start"] is False
    params = {k: v for k, v in more.get_params().items()
              if k not in ("max_iter", "learning_rate", "verbose", "random_state")}
    assert params == {k: start.get_params()[k] for k in params}
    # the same as training the loaded model on in Python
    again = start.set_params(warm_start=True, max_iter=2, learning_rate=1e-4, verbose=0,
                             random_state=0)
    X, _ = aekit.datasets.load("digits", split="train")
    again.fit(X)
    for name, value in again.module_.state_dict().items():
        assert torch.equal(more.module_.state_dict()[name], value), name


# ----------------------------------------------- transform, sample, score

def test_transform_writes_the_codes(capsys, vae_file, tmp_path):
    path = vae_file[0]
    code, out, err = run(capsys, "transform", path, "--data", "digits", "--split", "test",
                         "-o", tmp_path / "z.npy")
    assert (code, out, err) == (0, "", "")
    Z = np.load(tmp_path / "z.npy")
    assert Z.shape == (360, 2) and Z.dtype == np.float32
    assert np.isfinite(Z).all()
    X_test, _ = aekit.datasets.load("digits", split="test")
    np.testing.assert_allclose(Z, aekit.load(path).transform(X_test), rtol=1e-5, atol=1e-6)
    assert files_in(tmp_path) == ["z.npy"]


def test_sample_writes_n_samples(capsys, vae_file, tmp_path):
    for name in ("a.npy", "b.npy"):
        code, _, err = run(capsys, "sample", vae_file[0], "-n", 5, "--seed", 3,
                           "-o", tmp_path / name)
        assert code == 0, err
    samples = np.load(tmp_path / "a.npy")
    assert samples.shape == (5, 64)
    assert np.isfinite(samples).all()
    np.testing.assert_array_equal(samples, np.load(tmp_path / "b.npy"))   # same seed


def test_score_json(capsys, vae_file):
    code, out, err = run(capsys, "score", vae_file[0], "--data", "digits", "--split", "test",
                         "--json")
    assert code == 0, err
    result = json.loads(out)
    assert {"log_likelihood", "bits_per_dim", "elbo"} <= set(result)
    assert result["n_samples"] == 360 and result["split"] == "test"
    for key in ("log_likelihood", "log_likelihood_stderr", "elbo"):
        assert math.isfinite(result[key]), key
    # a Gaussian's log p(x) is a density: -ll / (D ln 2) would be no code length
    assert result["bits_per_dim"] is None
    assert "'gaussian_learned' is a density" in result["bits_per_dim_note"]
    X_test, _ = aekit.datasets.load("digits", split="test")
    assert result["log_likelihood"] == pytest.approx(aekit.load(vae_file[0]).score(X_test),
                                                     rel=1e-4)


def test_score_text(capsys, vae_file):
    code, out, _ = run(capsys, "score", vae_file[0], "--data", "digits", "--split", "test")
    assert code == 0
    assert "VAE on digits (test, 360 rows)" in out and "no bits/dim ('gaussian_learned' is" in out


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")   # 1 epoch
def test_score_gives_bits_per_dim_of_a_bernoulli_on_binary_data_only(capsys, tmp_path):
    X, _ = aekit.datasets.load("digits", split="test")
    binary = aekit.datasets.binarize(X, random_state=0)
    np.save(tmp_path / "binary.npy", binary)
    np.save(tmp_path / "grey.npy", X)
    aekit.VAE(likelihood="bernoulli", hidden_layer_sizes=(8,), max_iter=1,
              n_importance_samples=4, random_state=0).fit(binary).save(str(tmp_path / "m"))
    code, out, err = run(capsys, "score", tmp_path / "m", "--data", tmp_path / "binary.npy",
                         "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["bits_per_dim"] == pytest.approx(
        -result["log_likelihood"] / (64 * math.log(2)), rel=1e-5)
    assert "bits_per_dim_note" not in result
    code, out, err = run(capsys, "score", tmp_path / "m", "--data", tmp_path / "grey.npy",
                         "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["bits_per_dim"] is None and "grey levels" in result["bits_per_dim_note"]


def test_outputs_get_the_usual_file_mode(capsys, inputs, tmp_path):
    """Model and .npy files are shared like any other file, not private to their owner."""
    old = os.umask(0o022)
    try:
        code, _, err = run(capsys, "fit", "ae", "--data", inputs / "five.npy", "-o",
                           tmp_path / "m.safetensors", "--set", "max_iter=1",
                           "--set", "hidden_layer_sizes=(4,)", "-q")
        assert code == 0, err
        code, _, err = run(capsys, "sample", tmp_path / "m.safetensors", "-n", 2,
                           "-o", tmp_path / "s.npy")
        assert code == 0, err
        (tmp_path / "reference").write_bytes(b"")
    finally:
        os.umask(old)
    modes = {name: stat.S_IMODE(os.stat(tmp_path / name).st_mode)
             for name in ("reference", "m.safetensors", "s.npy")}
    assert modes == dict.fromkeys(modes, 0o644)


# ----------------------------------------------------------------- errors

#: (id, argv with {i} the inputs folder and {o} the (empty) output folder, message fragment)
ERRORS = [
    ("unknown-model", "fit nope --data digits -o {o}/m.safetensors", "unknown model 'nope'"),
    ("unknown-parameter", "fit vae --data digits -o {o}/m.safetensors --set bogus=1",
     r"unknown parameter\(s\) for vae: bogus"),
    ("invalid-value", "fit vae --data digits -o {o}/m.safetensors --set likelihood=nope",
     "'likelihood' parameter of VAE.*'nope'"),
    ("set-without-value", "fit vae --data digits -o {o}/m.safetensors --set max_iter",
     "--set expects key=value"),
    ("bad-toml", "fit vae --data digits -o {o}/m.safetensors --config {i}/bad.toml",
     "not valid TOML"),
    ("missing-config", "fit vae --data digits -o {o}/m.safetensors --config {i}/none.toml",
     "config file .* does not exist"),
    ("missing-data", "fit vae --data {i}/missing.npy -o {o}/m.safetensors",
     "missing.npy' is neither a registered dataset"),
    ("data-outside-support",
     "fit vae --data {i}/negative.npy -o {o}/m.safetensors --set likelihood=bernoulli",
     r"likelihood='bernoulli' models values in \[0, 1\]"),
    ("header-only-csv", "fit vae --data {i}/header.csv -o {o}/m.safetensors",
     "has a header but no data rows"),
    ("corrupt-idx-gz", "fit vae --data {i}/broken-ubyte.gz -o {o}/m.safetensors",
     "cannot read IDX file"),
    ("unknown-split", "fit vae --data digits --split dev -o {o}/m.safetensors",
     "unknown split 'dev'"),
    ("fit-without-a-model", "fit --data digits -o {o}/m.safetensors",
     "give the model to train .* or --warm-start MODEL_FILE"),
    ("warm-start-another-model",
     "fit vae --warm-start {i}/five.safetensors --data {i}/five.npy -o {o}/m.safetensors",
     "holds a AE, not a vae"),
    ("warm-start-another-width",
     "fit --warm-start {i}/five.safetensors --data digits -o {o}/m.safetensors",
     r"warm_start=True: .* has shape .*, was .*set warm_start=False"),
    ("warm-start-missing-file",
     "fit --warm-start {i}/none.safetensors --data digits -o {o}/m.safetensors",
     "model file .*none.safetensors' does not exist"),
    ("warm-start-onto-itself",
     "fit --warm-start {i}/five.safetensors --data {i}/five.npy -o {i}/five.safetensors",
     "is the input"),
    ("missing-model-transform", "transform {i}/none.safetensors --data digits -o {o}/z.npy",
     "model file .*none.safetensors' does not exist"),
    ("missing-model-sample", "sample {i}/none.safetensors -o {o}/s.npy",
     "model file .*none.safetensors' does not exist"),
    ("missing-model-score", "score {i}/none.safetensors --data digits",
     "model file .*none.safetensors' does not exist"),
    ("not-safetensors-transform", "transform {i}/random.safetensors --data digits -o {o}/z.npy",
     "is not a safetensors model file"),
    ("not-safetensors-score", "score {i}/random.safetensors --data digits",
     "is not a safetensors model file"),
    ("wrong-feature-count", "transform {i}/five.safetensors --data digits -o {o}/z.npy",
     "64 features.*expecting 5"),
    ("wrong-feature-count-score", "score {i}/five.safetensors --data digits",
     "64 features.*expecting 5"),
    ("no-samples", "sample {i}/five.safetensors -n 0 -o {o}/s.npy", "-n must be a positive"),
    ("missing-output-folder", "fit ae --data digits -o {o}/nodir/m.safetensors",
     "output folder .*nodir' does not exist"),
    ("wrong-output-suffix", "transform {i}/five.safetensors --data {i}/five.npy -o {o}/z.txt",
     r"should end in \.npy or \.parquet or \.csv"),
    # issue #21: one line, before any work, for every one of these
    ("score-k-0", "score {i}/five.safetensors --data {i}/five.npy -k 0",
     "-k must be a positive number of importance samples; got 0"),
    ("score-k-negative", "score {i}/five.safetensors --data {i}/five.npy -k -1",
     "-k must be a positive number of importance samples; got -1"),
    ("evaluate-k-0", "evaluate {i}/five.safetensors --data {i}/five.npy -k 0",
     "-k must be a positive number"),
    ("huge-n-components", "fit ae --data {i}/five.npy -o {o}/m.safetensors "
     "--set n_components=1000000000", r"network of 2.57e\+11 parameters .* use a smaller"),
    ("device-meta", "fit ae --data {i}/five.npy -o {o}/m.safetensors --set device=meta",
     "device='meta' is not supported"),
    ("sample-10-billion", "sample {i}/five.safetensors -n 10000000000 -o {o}/s.npy",
     "-n 10000000000 samples of 5 values take .* more than the memory budget"),
    ("seed-2**70", f"sample {{i}}/five.safetensors --seed {2**70} -o {{o}}/s.npy",
     r"--seed must be in \[0, 2\*\*32 - 1\]; got 1180591620717411303424"),
    ("set-50000-characters", "fit ae --data {i}/five.npy -o {o}/m.safetensors "
     "--set hidden_layer_sizes=" + "(" * 50_000, "--set value of 50000 characters"),
    ("set-nested-too-deeply", "fit ae --data {i}/five.npy -o {o}/m.safetensors "
     "--set n_components=" + "-" * 9_000 + "1", "--set value '-----.*nested too deeply"),
    ("npy-of-2**62-rows-of-nothing", "fit ae --data {i}/no-values.npy -o {o}/m.safetensors",
     r"no-values.npy' holds an array of shape \(4611686018427387904, 0\): rows with no"),
    ("npy-rows-of-nothing", "fit ae --data {i}/five-by-0.npy -o {o}/m.safetensors",
     r"five-by-0.npy' holds an array of shape \(5, 0\): rows with no values"),
    ("non-utf8-csv", "fit ae --data {i}/latin1.csv -o {o}/m.safetensors",
     r"latin1.csv' is not UTF-8 text \(byte 0xe9 at offset 10\)"),
    ("non-utf8-toml", "fit ae --data {i}/five.npy -o {o}/m.safetensors --config {i}/latin1.toml",
     "config file .*latin1.toml' is not UTF-8 text"),
    ("symlink-to-dev-zero", "fit ae --data {i}/zero.npy -o {o}/m.safetensors",
     "zero.npy' is a character device, through the symlink to '/dev/zero'"),
    ("output-is-a-folder", "fit ae --data {i}/five.npy -o {i}/folder.safetensors",
     "output .*folder.safetensors' is a folder; give a file name"),
    ("transform-output-is-a-folder",
     "transform {i}/five.safetensors --data {i}/five.npy -o {i}/folder.npy",
     "output .*folder.npy' is a folder"),
    ("output-parent-is-a-file", "fit ae --data {i}/five.npy -o {i}/notes.txt/m.safetensors",
     "output folder .*notes.txt' is a file, not a folder"),
    ("checkpoint-dir-is-a-file",
     "fit ae --data {i}/five.npy -o {o}/m.safetensors --checkpoint-dir {i}/notes.txt",
     "--checkpoint-dir .*notes.txt' is a file, not a folder"),
    ("fit-report-is-a-file", "fit ae --data {i}/five.npy -o {o}/m.safetensors "
     "--report {i}/notes.txt", "--report .*notes.txt' is a file, not a folder"),
    ("report-output-is-a-file", "report {i}/five.safetensors --data {i}/five.npy "
     "-o {i}/notes.txt", "-o .*notes.txt' is a file, not a folder"),
    ("transform-over-its-input",
     "transform {i}/five.safetensors --data {i}/five.npy -o {i}/five.npy",
     "output .*five.npy' is the input .*five.npy': writing it would replace"),
    ("fit-over-its-checkpoint", "fit ae --data {i}/five.npy --checkpoint-dir {i}/ck --resume "
     "-o {i}/ck/checkpoint.safetensors", "output .*checkpoint.safetensors' is the input"),
    ("fresh-run-over-a-checkpoint",
     "fit ae --data {i}/five.npy -o {o}/m.safetensors --checkpoint-dir {i}/ck",
     "holds the checkpoint of an earlier run .* --overwrite"),
    ("overwrite-without-checkpoint-dir", "fit ae --data {i}/five.npy -o {o}/m.safetensors "
     "--overwrite", "--overwrite needs --checkpoint-dir"),
    ("crafted-huge-model", "transform {i}/huge.safetensors --data {i}/five.npy -o {o}/z.npy",
     "weights do not fit a AE"),
    ("model-format-999", "sample {i}/v999.safetensors -o {o}/s.npy",
     "format_version 999; this aekit .* reads versions 1 to 3"),
    ("model-metadata-altered", "score {i}/scaled.safetensors --data {i}/five.npy",
     "metadata .* do not match the SHA-256"),
]


@pytest.mark.parametrize("argv, match", [pytest.param(a, m, id=i) for i, a, m in ERRORS])
def test_user_errors(capsys, inputs, tmp_path, argv, match):
    before = files_in(inputs)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, out, err = run(capsys, *argv.format(i=inputs, o=out_dir).split())
    assert code == 2
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("aekit: error: "), err
    assert re.search(match, lines[0]), lines[0]
    assert out == ""
    assert files_in(out_dir) == []
    assert files_in(inputs) == before


def test_failed_command_keeps_the_previous_output(capsys, inputs, tmp_path):
    previous = tmp_path / "z.npy"
    np.save(previous, np.arange(3))
    code, _, err = run(capsys, "transform", inputs / "five.safetensors", "--data", "digits",
                       "-o", previous)
    assert code == 2 and err.startswith("aekit: error:")
    np.testing.assert_array_equal(np.load(previous), np.arange(3))
    assert files_in(tmp_path) == ["z.npy"]


def test_debug_mode_shows_the_traceback(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("AEKIT_DEBUG", "1")
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        main(["fit", "nope", "--data", "digits", "-o", str(tmp_path / "m.safetensors")])


def test_python_dash_m_entry_point(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "AEKIT_DEBUG"}
    ok = subprocess.run([sys.executable, "-m", "aekit", "models"], capture_output=True,
                        text=True, env=env, cwd=tmp_path, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert {"ae", "vae"} <= {line.split()[0] for line in ok.stdout.splitlines()}

    bad = subprocess.run([sys.executable, "-m", "aekit", "transform", "none.safetensors",
                          "--data", "digits", "-o", "z.npy"], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=120)
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
    assert bad.stderr.startswith("aekit: error: model file 'none.safetensors' does not exist")
    assert files_in(tmp_path) == []


def test_evaluate_prints_a_table_and_writes_json(capsys, vae_file, tmp_path):
    code, out, err = run(capsys, "evaluate", vae_file[0], "--data", "digits", "-k", "20",
                         "--json", tmp_path / "m.json")
    assert code == 0, err
    assert "density.log_likelihood" in out and "PCA" in out
    result = json.loads((tmp_path / "m.json").read_text())
    assert result["split"] == "test" and result["n_test"] == 360
    assert math.isfinite(result["density"]["log_likelihood"])
    assert math.isfinite(result["baseline_pca"]["manifold"]["reconstruction_mse"])


def test_evaluate_refuses_a_bad_json_path_before_any_work(capsys, vae_file, tmp_path):
    code, out, err = run(capsys, "evaluate", vae_file[0], "--data", "digits",
                         "--json", tmp_path / "nope" / "m.json")
    assert code == 2 and err.startswith("aekit: error:") and "does not exist" in err
    assert not (tmp_path / "nope").exists()


def test_report_and_fit_report_write_a_page(capsys, vae_file, tmp_path):
    code, out, err = run(capsys, "report", vae_file[0], "--data", "digits", "-o",
                         tmp_path / "report")
    assert code == 0, err
    assert (tmp_path / "report" / "index.html").is_file()
    code, out, err = run(capsys, "fit", "ae", "--data", "digits", "-o", tmp_path / "ae.safetensors",
                         *FIT_VAE, "-q", "--report", tmp_path / "fit-report")
    assert code == 0, err
    html = (tmp_path / "fit-report" / "index.html").read_text()
    assert "AE" in html and "<img" in html


# ------------------------------------------------------- outputs before work (issue #21)

@pytest.mark.parametrize("argv", [
    "fit ae --data {i}/five.npy -o {i}/folder.safetensors",
    "fit ae --data {i}/five.npy -o {o}/m.safetensors --checkpoint-dir {i}/notes.txt",
    "fit ae --data {i}/five.npy -o {o}/m.safetensors --report {i}/notes.txt",
    "fit ae --data {i}/five.npy -o {o}/m.safetensors --checkpoint-dir {i}/ck",
    "transform {i}/five.safetensors --data {i}/five.npy -o {i}/five.npy",
    "report {i}/five.safetensors --data {i}/five.npy -o {i}/notes.txt",
], ids=["output-folder", "checkpoint-dir-file", "report-file", "fresh-over-checkpoint",
        "output-is-input", "report-output-file"])
def test_outputs_are_refused_before_the_data_are_read(capsys, inputs, tmp_path, monkeypatch,
                                                      argv):
    def no_reading(*args, **kwargs):
        raise AssertionError("the data were read before the outputs were checked")

    monkeypatch.setattr(sys.modules["aekit.cli.main"], "load_data", no_reading)
    monkeypatch.setattr("aekit.load", no_reading)
    code, out, err = run(capsys, *argv.format(i=inputs, o=tmp_path).split())
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("aekit: error: "), err


def _unwritable_folder(tmp_path):
    """A folder this process cannot create files in (root may write anywhere it owns:
    then /sys, where even root may not create files)."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    if sys.platform.startswith("linux") and not os.access("/sys", os.W_OK) or _cannot_create(
            "/sys"):
        return "/sys"
    pytest.skip("no unwritable folder for root here")


def _cannot_create(folder):
    try:
        with open(os.path.join(folder, ".aekit-test"), "x"):
            pass
    except OSError:
        return True
    os.unlink(os.path.join(folder, ".aekit-test"))
    return False


def test_an_unwritable_output_folder_is_refused_before_training(capsys, inputs, tmp_path,
                                                               monkeypatch):
    folder = _unwritable_folder(tmp_path)
    monkeypatch.setattr(sys.modules["aekit.cli.main"], "load_data",
                        lambda *a, **k: pytest.fail("data read"))
    for argv in (["fit", "ae", "--data", inputs / "five.npy", "-o", f"{folder}/m.safetensors"],
                 ["report", inputs / "five.safetensors", "--data", inputs / "five.npy",
                  "-o", f"{folder}/report"]):
        code, _, err = run(capsys, *argv)
        assert code == 2 and len(err.splitlines()) == 1, err
        assert re.search(r"cannot write .* in '.*'", err), err


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_full_disk_after_training_is_one_line_and_leaves_nothing(inputs, tmp_path):
    """A write cut short (the file size limit stands in for a full disk) after the whole
    training run: one line naming the output, no traceback, no file."""
    code = ("import resource, signal, sys\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))\n"
            "from aekit.cli.main import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    env = {k: v for k, v in os.environ.items() if k != "AEKIT_DEBUG"}
    out = subprocess.run([sys.executable, "-c", code, "fit", "ae", "--data",
                          str(inputs / "five.npy"), "--set", "max_iter=1", "-q", "-o",
                          str(tmp_path / "m.safetensors")], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(f"aekit: error: cannot write '{tmp_path / 'm.safetensors'}'")
    assert len(out.stderr.splitlines()) == 1 and files_in(tmp_path) == []


def test_overwrite_replaces_another_runs_checkpoint(capsys, inputs, tmp_path):
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "checkpoint.safetensors").write_bytes((inputs / "ck" / "checkpoint.safetensors")
                                                .read_bytes())
    args = ["fit", "ae", "--data", inputs / "five.npy", "--set", "max_iter=2", "--set",
            "n_components=3", "-q", "--checkpoint-dir", ck, "-o", tmp_path / "m.safetensors"]
    code, _, err = run(capsys, *args)
    assert code == 2 and "holds the checkpoint of an earlier run" in err
    code, _, err = run(capsys, *args, "--overwrite")
    assert code == 0, err
    assert files_in(ck) == ["checkpoint.safetensors"]
    code, _, err = run(capsys, *args[:-4], "--set", "max_iter=3", "--checkpoint-dir", ck,
                       "--resume", "-o", tmp_path / "m.safetensors")
    assert code == 0, err
    assert aekit.load(tmp_path / "m.safetensors").n_iter_ == 3


HOLDER = """
import sys, time
from aekit.training.checkpoint import claim
with claim(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_second_run_into_a_held_checkpoint_dir_is_refused(capsys, inputs, tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "ck")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, _, err = run(capsys, "fit", "ae", "--data", inputs / "five.npy", "-q",
                           "--checkpoint-dir", tmp_path / "ck", "-o", tmp_path / "m.safetensors")
    finally:
        holder.kill()
        holder.wait()
    assert code == 2 and "another run is writing checkpoints into" in err, err
    assert not (tmp_path / "m.safetensors").exists()
