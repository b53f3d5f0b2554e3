"""Model files and training checkpoints: round trips, and files that must be refused without
running anything (corrupt, or crafted with a matching digest), in one line naming the file."""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import aekit
import aekit.persistence
import aekit.runtime
from aekit.exceptions import InputError
from aekit.training.checkpoint import CHECKPOINT_NAME, checkpoint_sha256

from .conftest import SMALL


@pytest.fixture
def saved(fitted_vae, tmp_path):
    path = tmp_path / "vae.safetensors"
    fitted_vae.save(path)
    return path


def _rewrite(path, tensors=None, meta=None, reseal=True):
    """Write ``path`` again with changed tensors and/or metadata; ``reseal``: with the
    metadata's SHA-256 recomputed, as a crafted file would have it (the digest is not a
    signature), so that the checks behind the digest are what is tested."""
    with safe_open(str(path), framework="pt") as f:
        old_meta = json.loads(f.metadata()["aekit"])
    tensors = load_file(str(path)) if tensors is None else tensors
    meta = dict(meta or old_meta)
    if reseal:
        meta["sha256"] = aekit.persistence.metadata_sha256(meta)
    save_file(tensors, str(path), metadata={"aekit": json.dumps(meta)})
    return old_meta


def test_round_trip_gives_the_same_model(fitted_vae, saved, digits):
    X, _ = digits
    again = aekit.load(saved)
    assert type(again) is aekit.VAE and again.get_params() == fitted_vae.get_params()
    np.testing.assert_array_equal(again.transform(X[:20]), fitted_vae.transform(X[:20]))
    np.testing.assert_array_equal(again.score_samples(X[:20]), fitted_vae.score_samples(X[:20]))
    np.testing.assert_array_equal(again.sample(4, random_state=1),
                                  fitted_vae.sample(4, random_state=1))
    assert again.history_ == fitted_vae.history_ and again.n_iter_ == fitted_vae.n_iter_


def test_ae_round_trip_keeps_its_sampling_distribution(fitted_ae, tmp_path):
    fitted_ae.save(tmp_path / "ae.safetensors")
    again = aekit.load(tmp_path / "ae.safetensors")
    np.testing.assert_array_equal(again.sample(3, random_state=0),
                                  fitted_ae.sample(3, random_state=0))


def test_image_model_round_trip_keeps_the_shape(digits, tmp_path):
    X, _ = digits
    images = X[:100].reshape(100, 8, 8)
    model = aekit.AE(**SMALL).fit(images)
    model.save(tmp_path / "m.safetensors")
    again = aekit.load(tmp_path / "m.safetensors")
    assert again.input_shape_ == (8, 8)
    np.testing.assert_array_equal(again.reconstruct(images[:3]), model.reconstruct(images[:3]))


def test_saving_an_unfitted_model_is_refused(tmp_path):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        aekit.VAE().save(tmp_path / "x.safetensors")
    assert not list(tmp_path.iterdir())


def test_a_pickle_payload_renamed_to_safetensors_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ValueError, match="not a safetensors model file"):
        aekit.load(path)
    assert not marker.exists()


def test_metadata_naming_an_import_path_is_refused(saved, tmp_path):
    meta = _rewrite(saved)
    meta["class"] = "os.system"
    _rewrite(saved, meta=meta)
    with pytest.raises(ValueError, match="unknown model 'os.system'"):
        aekit.load(saved)


def test_tampered_tensors_are_refused(saved):
    tensors = load_file(str(saved))
    tensors["encoder.0.weight"][0, 0] += 1.0
    _rewrite(saved, tensors=tensors)
    with pytest.raises(ValueError, match="do not match the SHA-256"):
        aekit.load(saved)


def test_missing_tensors_are_refused(saved):
    tensors = load_file(str(saved))
    del tensors["decoder.0.bias"]
    meta = _rewrite(saved, tensors=tensors)
    meta["tensors_sha256"] = aekit.persistence.tensors_sha256(tensors)   # even with a matching hash
    _rewrite(saved, tensors=tensors, meta=meta)
    with pytest.raises(ValueError, match="weights do not fit a VAE"):
        aekit.load(saved)


@pytest.mark.parametrize("edit", ["bad_param", "unknown_param", "no_shape", "not_json"])
def test_tampered_metadata_is_refused(saved, edit):
    meta = _rewrite(saved)
    if edit == "bad_param":
        meta["params"]["likelihood"] = "nope"
    elif edit == "unknown_param":
        meta["params"]["evil"] = 1
    elif edit == "no_shape":
        del meta["fitted"]["input_shape_"]
    if edit == "not_json":
        save_file(load_file(str(saved)), str(saved), metadata={"aekit": "{not json"})
    else:
        _rewrite(saved, meta=meta)
    with pytest.raises(ValueError, match="aekit"):
        aekit.load(saved)


def test_a_plain_safetensors_file_is_not_a_model(tmp_path):
    import torch

    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="not an aekit model"):
        aekit.load(tmp_path / "plain.safetensors")


def test_a_failed_save_leaves_the_previous_file_intact(fitted_vae, saved, monkeypatch):
    before = saved.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(aekit.runtime, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        fitted_vae.save(saved)
    assert saved.read_bytes() == before
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        aekit.load(tmp_path / "nope.safetensors")


# ------------------------------------------------ crafted and corrupted model files

def _set(*keys, value):
    """An edit of the metadata setting ``meta[keys[0]][keys[1]]... = value``."""
    def edit(meta):
        target = meta
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return edit


#: (id, edit of the metadata, recompute the metadata digest, message fragment). Resealed
#: edits are what a crafted file can do (the digest is no signature): the checks behind
#: the digest must refuse them; unsealed ones are corruption, refused by the digest.
CRAFTED = [
    ("likelihood-scale-changed", _set("params", "likelihood_scale", value=9.0), False,
     "metadata .* do not match the SHA-256"),
    ("epoch-count-changed", _set("fitted", "n_iter_", value=9), False,
     "metadata .* do not match the SHA-256"),
    ("format-version-999", _set("format_version", value=999), True,
     "format_version 999; this aekit .* reads versions 1 to 3"),
    ("format-version-text", _set("format_version", value="2"), True,
     "format_version '2'; this aekit"),
    ("negative-hidden-size", _set("params", "hidden_layer_sizes", value=[-8]), True,
     "hidden_layer_sizes must be .*sequence of positive integers"),
    ("fractional-hidden-size", _set("params", "hidden_layer_sizes", value=[1.5]), True,
     r"hidden_layer_sizes must be .* positive integers.*; got \(1.5,\)"),
    ("negative-n-components", _set("params", "n_components", value=-2), True,
     "'n_components' parameter of VAE must be an int in the range"),
    ("huge-n-components", _set("params", "n_components", value=10**12), True,
     "weights do not fit a VAE"),
    ("huge-hidden-size", _set("params", "hidden_layer_sizes", value=[10**8]), True,
     "weights do not fit a VAE"),
    ("huge-input-shape", _set("fitted", "input_shape_", value=[10**6, 10**6]), True,
     "weights do not fit a VAE"),
    ("absurd-input-shape", _set("fitted", "input_shape_", value=[10**30]), True,
     "input_shape_ must be 1 to 3 positive integers"),
    ("infinite-input-shape", _set("fitted", "input_shape_", value=float("inf")), True,
     "input_shape_ must be 1 to 3 positive integers"),
    ("infinite-input-dim", _set("fitted", "input_shape_", value=[float("inf")]), True,
     r"input_shape_ must be .*; got \[inf\]"),
    ("negative-input-dim", _set("fitted", "input_shape_", value=[-64]), True,
     "input_shape_ must be 1 to 3 positive integers"),
    ("params-a-list", _set("params", value=[1, 2]), True, "'params' and 'fitted' must be"),
    ("history-a-list", _set("fitted", "history_", value=[1.0]), True,
     "history_ must map names to lists"),
    ("n-iter-text", _set("fitted", "n_iter_", value="3"), True,
     "n_iter_ must be a non-negative integer"),
    ("class-a-list", _set("class", value=["vae"]), True, r"unknown model \['vae'\]"),
]


@pytest.mark.parametrize("edit, reseal, match",
                         [pytest.param(e, r, m, id=i) for i, e, r, m in CRAFTED])
def test_tampered_or_crafted_metadata_is_refused_in_one_line(saved, edit, reseal, match):
    meta = _rewrite(saved)
    edit(meta)
    _rewrite(saved, meta=meta, reseal=reseal)
    with pytest.raises(InputError, match=match) as info:
        aekit.load(saved)
    assert "\n" not in str(info.value) and str(saved) in str(info.value)


def test_tampered_metadata_nested_100k_deep_is_refused(saved):
    deep = '{"format": "aekit-model", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    save_file(load_file(str(saved)), str(saved), metadata={"aekit": deep})
    with pytest.raises(InputError, match="nested too deeply"):
        aekit.load(saved)


def test_tampered_tensors_of_a_resealed_file_are_refused(saved):
    """Resealing the metadata does not cover changed weights: they have their own digest."""
    tensors = load_file(str(saved))
    tensors["decoder.0.weight"].view(-1)[0] *= -1
    _rewrite(saved, tensors=tensors)
    with pytest.raises(InputError, match="tensors do not match the SHA-256"):
        aekit.load(saved)


def test_a_format_version_1_file_is_still_read(fitted_vae, saved, digits):
    """Files written before the metadata digest (format 1: tensors' digest only) load."""
    meta = _rewrite(saved)
    meta["format_version"] = 1
    del meta["sha256"]
    _rewrite(saved, meta=meta, reseal=False)
    again = aekit.load(saved)
    np.testing.assert_array_equal(again.transform(digits[0][:5]),
                                  fitted_vae.transform(digits[0][:5]))


PEAK_MEMORY = """
import sys
import aekit

def peak_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024

before = peak_mb()
try:
    aekit.load(sys.argv[1])
    print("loaded")
except aekit.exceptions.InputError as exc:
    print("refused:", exc)
print(peak_mb() - before)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="VmHWM is Linux's")
def test_tampered_sizes_are_refused_within_bounded_memory(saved, tmp_path):
    """A 100 MB-wide hidden layer declared in a file of a few KB: before the meta-device
    build, loading it peaked at 5.4 GB (0.54 GB for 10**7)."""
    meta = _rewrite(saved)
    meta["params"]["hidden_layer_sizes"] = [10**8]
    _rewrite(saved, meta=meta)
    assert saved.stat().st_size < 100_000
    script = tmp_path / "peak.py"
    script.write_text(PEAK_MEMORY)
    out = subprocess.run([sys.executable, str(script), str(saved)], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("refused:") and "weights do not fit a VAE" in lines[0]
    assert float(lines[-1]) < 300, f"loading grew the peak memory by {lines[-1]} MB"


# ------------------------------------------------------- corrupt and crafted checkpoints

CHECKPOINT_RUN = dict(hidden_layer_sizes=(8,), max_iter=2, batch_size=32, random_state=0)


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory):
    """The checkpoint of a 2-epoch AE run on 100 digits rows, and those rows."""
    X = aekit.datasets.load("digits")[0][:100]
    folder = tmp_path_factory.mktemp("run")
    aekit.AE(**CHECKPOINT_RUN).fit(X, checkpoint_dir=folder)
    return (folder / CHECKPOINT_NAME).read_bytes(), X


def _edit_checkpoint(path, edit, reseal):
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["aekit"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    edit(meta, tensors)
    if reseal:
        meta["sha256"] = checkpoint_sha256(tensors, meta)
    save_file(tensors, str(path), metadata={"aekit": json.dumps(meta)})


def _flip_a_bit(meta, tensors):
    weight = tensors["model.encoder.0.weight"]
    weight.view(-1).view(torch.int32)[7] ^= 1 << 3


def _drop(name):
    def edit(meta, tensors):
        del tensors[name]
    return edit


def _replace(name, value):
    def edit(meta, tensors):
        tensors[name] = value
    return edit


def _meta(key, value):
    def edit(meta, tensors):
        if value is KeyError:
            del meta[key]
        else:
            meta[key] = value
    return edit


#: (id, edit of (metadata, tensors), recompute the digest, message fragment)
BAD_CHECKPOINTS = [
    ("one-bit-flipped-in-a-weight", _flip_a_bit, False, "does not match the SHA-256"),
    ("epoch-2-changed-to-9", _meta("epoch", 9), False, "does not match the SHA-256"),
    ("written-before-the-digest", _meta("sha256", KeyError), False, "has no SHA-256"),
    ("wrong-shape-weight", _replace("model.encoder.0.weight", torch.zeros(3, 3)), True,
     r"model.encoder.0.weight is \[3, 3\] of torch.float32, the model's \[8, 64\]"),
    ("missing-weight", _drop("model.decoder.0.bias"), True, "model.decoder.0.bias is missing"),
    ("wrong-shape-optimizer-state", _replace("optim0.0.exp_avg", torch.zeros(5)), True,
     r"the optimizer state 'optim0.0.exp_avg' is \[5\]"),
    ("optimizer-state-of-no-parameter", _replace("optim0.99.exp_avg", torch.zeros(1)), True,
     "'optim0.99.exp_avg' belongs to no parameter"),
    ("3-byte-rng-state", _replace("rng.order", torch.zeros(3, dtype=torch.uint8)), True,
     "the rng.order state has 3 values"),
    ("history-a-list", _meta("history", [1.0, 2.0]), True, "bad 'history' entry"),
    ("no-run", _meta("run", KeyError), True, "has no 'run' entry"),
    ("epoch-a-string", _meta("epoch", "2"), True, "bad 'epoch' entry"),
    ("negative-stall", _meta("stall", -1), True, "bad 'stall' entry"),
    ("optimizers-not-a-list", _meta("optimizers", {"a": 1}), True, "bad 'optimizers' entry"),
    ("scaler-a-list", _meta("scaler", []), True, "bad 'scaler' entry"),
    ("bad-param-groups", _meta("optimizers", [{"param_groups": [], "scalars": {}}]), True,
     "optimizer or gradient-scaler state cannot be restored"),
]


@pytest.mark.parametrize("edit, reseal, match",
                         [pytest.param(e, r, m, id=i) for i, e, r, m in BAD_CHECKPOINTS])
def test_tampered_checkpoint_is_refused_in_one_line(checkpoint_bytes, tmp_path, edit, reseal,
                                                    match):
    data, X = checkpoint_bytes
    path = tmp_path / CHECKPOINT_NAME
    path.write_bytes(data)
    _edit_checkpoint(path, edit, reseal)
    model = aekit.AE(**{**CHECKPOINT_RUN, "max_iter": 4})
    with pytest.raises(InputError, match=match) as info:
        model.fit(X, checkpoint_dir=tmp_path, resume=True)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert not hasattr(model, "module_")


def test_tampered_checkpoint_nested_100k_deep_is_refused(checkpoint_bytes, tmp_path):
    data, X = checkpoint_bytes
    path = tmp_path / CHECKPOINT_NAME
    path.write_bytes(data)
    deep = '{"format": "aekit-checkpoint", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors, str(path), metadata={"aekit": deep})
    with pytest.raises(InputError, match="not a readable aekit checkpoint .JSON nested too"):
        aekit.AE(**CHECKPOINT_RUN).fit(X, checkpoint_dir=tmp_path, resume=True)


def test_an_intact_checkpoint_still_resumes(checkpoint_bytes, tmp_path):
    data, X = checkpoint_bytes
    (tmp_path / CHECKPOINT_NAME).write_bytes(data)
    model = aekit.AE(**{**CHECKPOINT_RUN, "max_iter": 3}).fit(X, checkpoint_dir=tmp_path,
                                                             resume=True)
    assert model.n_iter_ == 3 and len(model.history_["loss"]) == 3
