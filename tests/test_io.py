"""Model files: round trips, and files that must be refused without running anything."""

import json
import pickle

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import aekit
import aekit.persistence

from .conftest import SMALL


@pytest.fixture
def saved(fitted_vae, tmp_path):
    path = tmp_path / "vae.safetensors"
    fitted_vae.save(path)
    return path


def _rewrite(path, tensors=None, meta=None):
    """Write ``path`` again with changed tensors and/or metadata."""
    with safe_open(str(path), framework="pt") as f:
        old_meta = json.loads(f.metadata()["aekit"])
    tensors = load_file(str(path)) if tensors is None else tensors
    save_file(tensors, str(path), metadata={"aekit": json.dumps(meta or old_meta)})
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

    monkeypatch.setattr(aekit.persistence, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        fitted_vae.save(saved)
    assert saved.read_bytes() == before
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        aekit.load(tmp_path / "nope.safetensors")
