"""A user's own data and networks: standardised features with honest densities, the
default that does not collapse, bad columns, and encoder= / decoder= with save and load."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from torch import nn

import aekit
from aekit.exceptions import InputError
from aekit.nn import NETWORKS

from .conftest import SMALL

FASHION = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(scope="module")
def raw_digits():
    """scikit-learn's digits as a user has them: grey levels 0..16, float64."""
    X, y = load_digits(return_X_y=True)
    return X[:600].astype(np.float64), y[:600]


# ------------------------------------------------------------------ standardised features

def test_the_model_is_the_same_in_any_units_and_its_density_moves_by_the_jacobian(
        raw_digits):
    """x' = a x + b per feature: standardising makes training see the same numbers, so
    the codes agree and log p(x') = log p(x) - sum log a (the change of variables)."""
    X = raw_digits[0]
    X = X[:, X.std(0) > 1.0][:, :20]                   # 20 features, none constant
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.5, 2000.0, X.shape[1]), rng.uniform(-1e4, 1e4, X.shape[1])
    params = dict(SMALL, n_components=3, max_iter=5, likelihood="gaussian_learned")
    one = aekit.VAE(**params).fit(X)
    two = aekit.VAE(**params).fit(X * a + b)
    np.testing.assert_allclose(two.transform(X * a + b), one.transform(X), atol=2e-3)
    shift = one.score_samples(X) - two.score_samples(X * a + b)
    np.testing.assert_allclose(shift, np.log(a).sum(), rtol=1e-4)
    np.testing.assert_allclose((two.reconstruct(X[:5] * a + b) - b) / a,
                               one.reconstruct(X[:5]), atol=1e-2)


def test_scale_none_gives_another_model(raw_digits):
    X = raw_digits[0]
    auto = aekit.VAE(**{**SMALL, "max_iter": 2}).fit(X)
    none = aekit.VAE(**{**SMALL, "max_iter": 2}, scale="none").fit(X)
    assert auto.module_.likelihood.standardizes and not none.module_.likelihood.standardizes
    assert not any("data_loc" in k for k in none.module_.state_dict())
    loc = auto.module_.likelihood.data_loc.numpy()
    np.testing.assert_allclose(loc, X.mean(0), rtol=1e-5, atol=1e-5)


def test_sample_and_inverse_transform_are_in_the_data_units(raw_digits):
    X = raw_digits[0] * 1000.0
    vae = aekit.VAE(**{**SMALL, "max_iter": 3}).fit(X)
    samples = vae.sample(200, random_state=0)
    assert 0.3 < samples.mean() / X.mean() < 3.0
    assert vae.inverse_transform(np.zeros((1, 2))).max() > 100


def test_the_default_vae_does_not_collapse_on_raw_digits(raw_digits):
    """The issue's case: raw grey levels 0..16, defaults, n_components=8."""
    X, y = raw_digits
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        vae = aekit.VAE(n_components=8, max_iter=30, random_state=0).fit(X)
    assert vae.history_["active_units"][-1] >= 4


def test_without_standardising_a_weak_likelihood_still_warns(raw_digits):
    X = raw_digits[0] / 16.0
    with pytest.warns(ConvergenceWarning, match="scale='auto'"):
        aekit.VAE(n_components=4, max_iter=5, random_state=0, scale="none",
                  likelihood="gaussian").fit(X)


@pytest.mark.parametrize("column", ["constant", "huge", "integer", "tiny"])
def test_awkward_columns_train_and_score_finitely(raw_digits, column):
    X = raw_digits[0][:, 16:32].copy()
    values = {"constant": np.full(len(X), 7.0), "huge": np.linspace(1e9, 3e9, len(X)),
              "integer": np.arange(len(X)) % 5, "tiny": np.linspace(0, 1e-6, len(X))}
    X[:, 3] = values[column]
    vae = aekit.VAE(**{**SMALL, "max_iter": 3}, likelihood="gaussian_learned").fit(X)
    assert np.isfinite(vae.score_samples(X)).all()
    assert np.isfinite(vae.reconstruct(X)).all()
    scale = vae.module_.likelihood.data_scale.numpy()
    assert scale[3] == (1.0 if column == "constant" else pytest.approx(X[:, 3].std(),
                                                                       rel=1e-3))


def test_more_columns_than_rows_and_two_rows_work():
    X = np.random.default_rng(0).normal(size=(6, 40))
    assert aekit.VAE(**{**SMALL, "max_iter": 2}).fit(X).transform(X).shape == (6, 2)
    assert aekit.AE(**{**SMALL, "max_iter": 2}).fit(X[:2]).transform(X[:2]).shape == (2, 2)


def test_scale_standard_needs_a_real_line_likelihood(raw_digits):
    with pytest.raises(InputError, match="scale='standard' needs a likelihood over the real"):
        aekit.VAE(likelihood="bernoulli", scale="standard").fit(raw_digits[0] / 16)
    vae = aekit.VAE(likelihood="bernoulli", **{**SMALL, "max_iter": 1}).fit(
        raw_digits[0] / 16)
    assert not vae.module_.likelihood.standardizes      # "auto" leaves [0, 1] data alone


def test_streamed_data_are_standardised_by_the_same_moments(raw_digits, tmp_path):
    X = raw_digits[0].astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    streamed = aekit.VAE(**{**SMALL, "max_iter": 1}).fit(str(tmp_path / "x.npy"),
                                                  memory_budget=8 * 1024)
    in_memory = aekit.VAE(**{**SMALL, "max_iter": 1}).fit(X)
    for name in ("data_loc", "data_scale"):
        np.testing.assert_allclose(getattr(streamed.module_.likelihood, name),
                                   getattr(in_memory.module_.likelihood, name), rtol=1e-5)


def test_moments_of_blocks_equal_those_of_the_whole():
    from aekit.estimator.validation import FeatureMoments

    X = np.random.default_rng(1).normal(5.0, 3.0, size=(1001, 4))
    moments = FeatureMoments()
    for part in np.array_split(X, 7):
        moments.update(part)
    mean, std = moments.standardization()
    np.testing.assert_allclose(mean, X.mean(0))
    np.testing.assert_allclose(std, X.std(0))


def test_standardised_models_save_and_load(raw_digits, tmp_path):
    X = raw_digits[0]
    vae = aekit.VAE(**{**SMALL, "max_iter": 2}).fit(X)
    vae.save(tmp_path / "m.safetensors")
    again = aekit.load(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(again.score_samples(X[:10]), vae.score_samples(X[:10]))
    np.testing.assert_array_equal(again.reconstruct(X[:10]), vae.reconstruct(X[:10]))


def test_a_file_written_before_standardising_loads_as_scale_none(raw_digits, tmp_path):
    X = raw_digits[0] / 16
    vae = aekit.VAE(**{**SMALL, "max_iter": 2}, scale="none").fit(X)
    path = tmp_path / "old.safetensors"
    vae.save(path)
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["aekit"])
    del meta["params"]["scale"]
    meta["format_version"] = 2
    meta["sha256"] = aekit.persistence.metadata_sha256(meta)
    save_file(load_file(str(path)), str(path), metadata={"aekit": json.dumps(meta)})
    again = aekit.load(path)
    assert again.scale == "none"
    np.testing.assert_array_equal(again.transform(X[:5]), vae.transform(X[:5]))


@pytest.mark.parametrize("name", ["ae", "denoising_ae", "contractive_ae", "sparse_ae", "stacked_ae",
                                  "vq_vae", "vamp_vae", "aae", "wae_mmd", "iwae", "beta_vae",
                                  "hvae"])
def test_every_model_trains_on_raw_features_of_large_scale(raw_digits, name):
    X = raw_digits[0][:200] * 1e4
    model = aekit.get_model(name, **{**SMALL, "max_iter": 2})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X)
    assert np.isfinite(model.transform(X)).all()
    assert np.isfinite(model.score_samples(X[:20])).all()
    assert model.reconstruct(X[:20]).mean() > 1e3           # data units, not standardised


def test_conditional_models_standardise_too(raw_digits):
    X, y = raw_digits
    cvae = aekit.CVAE(**{**SMALL, "max_iter": 2}).fit(X * 100, y)
    assert cvae.module_.likelihood.standardizes
    assert np.isfinite(cvae.score_samples(X[:10] * 100, y[:10])).all()
    half_labelled = np.where(np.arange(len(y)) % 2, y, -1)
    m2 = aekit.M2(**{**SMALL, "max_iter": 2}).fit(X * 100, half_labelled)
    assert (m2.predict(X[:50] * 100) >= 0).all()


# ------------------------------------------------------------------------ own networks

class TinyConvEncoder(nn.Module):
    """A user's conv encoder for (1, H, W) images."""

    def __init__(self, n_out: int, side: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(),
                                 nn.Flatten(), nn.Linear(4 * math.ceil(side / 2) ** 2, n_out))

    def forward(self, x):
        assert x.dim() == 4, "a conv encoder gets images"
        return self.net(x)


def tiny_decoder(k: int, side: int) -> nn.Module:
    return nn.Sequential(nn.Linear(k, 32), nn.ReLU(), nn.Linear(32, side * side),
                         nn.Unflatten(1, (1, side, side)))


@pytest.fixture(scope="module")
def images():
    """28x28 Fashion-MNIST when installed, else 28x28 images drawn here."""
    try:
        X, _ = aekit.datasets.load("fashion-mnist", split="test", flatten=False)
        return X[:300]
    except (OSError, ValueError):
        rng = np.random.default_rng(0)
        return rng.uniform(size=(300, 28, 28)).astype(np.float32)


def test_a_users_conv_networks_train_save_and_load(images, tmp_path):
    enc, dec = TinyConvEncoder(8, 28), tiny_decoder(4, 28)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    vae = aekit.VAE(n_components=4, encoder=enc, decoder=dec, likelihood="bernoulli",
                    **{**SMALL, "max_iter": 2}).fit(images)
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())  # not mutated
    assert vae.sample(3, random_state=0).shape == (3, 28, 28)
    path = tmp_path / "own.safetensors"
    vae.save(path)
    with pytest.raises(InputError, match=r"your own encoder \(TinyConvEncoder\).*pass it again"):
        aekit.load(path)
    again = aekit.load(path, encoder=TinyConvEncoder(8, 28), decoder=tiny_decoder(4, 28))
    np.testing.assert_array_equal(again.transform(images[:5]), vae.transform(images[:5]))
    with pytest.raises(InputError, match="weights do not fit"):
        aekit.load(path, encoder=TinyConvEncoder(6, 28), decoder=tiny_decoder(4, 28))


def test_wrong_widths_say_which_width_was_expected(images):
    with pytest.raises(InputError, match=r"encoder gives 4 values .* must give 8: the mean "
                                         r"and log-variance"):
        aekit.VAE(n_components=4, encoder=TinyConvEncoder(4, 28),
                  **{**SMALL, "max_iter": 1}).fit(images)
    with pytest.raises(InputError, match=r"decoder gives 100 values .* must give 784: the "
                                         r"parameters of .*784 features x 1 per feature"):
        aekit.AE(n_components=4, decoder=nn.Linear(4, 100),
                 **{**SMALL, "max_iter": 1}).fit(images)
    with pytest.raises(InputError, match=r"must give 200704: .*784 features x 256"):
        aekit.AE(n_components=4, likelihood="categorical", decoder=tiny_decoder(4, 28),
                 **{**SMALL, "max_iter": 1}).fit(images)


def test_registered_factories_are_rebuilt_from_the_file(raw_digits, tmp_path):
    name = "test_own_data_mlp"
    if name not in NETWORKS:
        @aekit.register_network(name)
        def mlp_factory(input_shape, n_outputs, width=16):
            return nn.Sequential(nn.Linear(math.prod(input_shape), width), nn.Tanh(),
                                 nn.Linear(width, n_outputs))
    X = raw_digits[0]
    ae = aekit.AE(n_components=3, encoder=(name, {"width": 8}), decoder=name,
                  **{**SMALL, "max_iter": 2}).fit(X)
    assert ae.module_.encoder.net[0].out_features == 8
    ae.save(tmp_path / "m.safetensors")
    again = aekit.load(tmp_path / "m.safetensors")
    assert again.encoder == (name, {"width": 8}) and again.decoder == name
    np.testing.assert_array_equal(again.transform(X[:4]), ae.transform(X[:4]))


def test_a_factory_gets_the_row_shape_and_width(raw_digits):
    seen = []

    def factory(input_shape, n_outputs):
        seen.append((input_shape, n_outputs))
        return nn.Linear(math.prod(input_shape), n_outputs)

    aekit.VAE(n_components=3, encoder=factory, decoder=factory,
              **{**SMALL, "max_iter": 1}).fit(raw_digits[0])
    assert ((64,), 6) in seen and ((3,), 64) in seen


@pytest.mark.parametrize("spec, message", [
    (3, "expected None, an nn.Module"),
    ("nobody_registered_this", "no network is registered as 'nobody_registered_this'"),
    (("x", 3), "a \\(name, arguments\\) pair"),
    (lambda shape, n: "not a module", "returned str, not an nn.Module"),
])
def test_bad_network_values_are_refused_in_one_line(raw_digits, spec, message):
    with pytest.raises(InputError, match=message):
        aekit.AE(encoder=spec, **{**SMALL, "max_iter": 1}).fit(raw_digits[0])


@pytest.mark.parametrize("model", ["cvae", "m2", "stacked_ae"])
def test_models_that_build_their_own_networks_refuse_users(raw_digits, model):
    X, y = raw_digits
    with pytest.raises(InputError, match="cannot take your own encoder"):
        aekit.get_model(model, encoder=nn.Linear(64, 4), **{**SMALL, "max_iter": 1}).fit(X, y)


def test_clone_copies_a_users_module(raw_digits):
    enc = nn.Linear(64, 4)
    vae = aekit.VAE(encoder=enc, **{**SMALL, "max_iter": 1})
    assert clone(vae).encoder is not enc
    vae.fit(raw_digits[0])
    assert vae.module_.encoder.net is not enc


# ------------------------------------------------------------------ images of any size

def photo_patches(side: int, n: int = 120) -> np.ndarray:
    """``n`` RGB patches ``(n, 3, side, side)`` in [0, 1] cut from the two photographs
    scikit-learn ships (needs Pillow); random RGB images where it is missing."""
    try:
        from sklearn.datasets import load_sample_images
        photos = load_sample_images().images                  # two (427, 640, 3) uint8
    except ImportError:
        return np.random.default_rng(0).uniform(size=(n, 3, side, side)).astype(np.float32)
    rng = np.random.default_rng(0)
    patches = []
    for i in range(n):
        photo = photos[i % 2]
        top = rng.integers(0, photo.shape[0] - side)
        left = rng.integers(0, photo.shape[1] - side)
        patches.append(photo[top:top + side, left:left + side].transpose(2, 0, 1))
    return (np.stack(patches) / 255.0).astype(np.float32)


@pytest.mark.parametrize("shape, stages", [((28, 28), 2), ((3, 32, 32), 2), ((3, 64, 64), 3),
                                           ((3, 40, 72), 3)])
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")   # 1 epoch
def test_conv_networks_size_their_depth_from_the_resolution(shape, stages):
    if len(shape) == 3 and shape[1] == shape[2]:
        X = photo_patches(shape[1], n=64)                   # real RGB photographs
    else:
        X = np.random.default_rng(0).uniform(size=(64, *shape)).astype(np.float32)
    vae = aekit.VAE(n_components=4, likelihood="bernoulli", batch_size=32, max_iter=1,
                    random_state=0).fit(X)
    convs = [m for m in vae.module_.encoder.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == stages and convs[0].in_channels == (shape[0] if len(shape) == 3 else 1)
    assert vae.sample(2, random_state=0).shape == (2, *shape)
    assert vae.reconstruct(X[:3]).shape == (3, *shape)


def test_the_default_vae_learns_real_rgb_patches():
    X = photo_patches(32, n=256)
    vae = aekit.VAE(n_components=8, max_iter=15, random_state=0).fit(X)
    assert vae.history_["active_units"][-1] >= 2
    before, after = vae.history_["loss"][0], vae.history_["loss"][-1]
    assert after < before
    error = np.mean((vae.reconstruct(X) - X) ** 2)
    assert error < np.var(X)              # better than the mean image
