"""On a CUDA GPU: every model at every precision, resumption, the caller's random states,
and scores against the CPU. Skipped, with the reason, on a machine without CUDA; the rest
of the suite runs on the CPU even where a GPU exists (tests/conftest.py).

The longer checks (compile against eager, host-device syncs per step, peak memory, epoch
times, a 2-process NCCL fit) are ``python benchmarks/gpu_check.py``.
"""

import numpy as np
import pytest
import torch

import aekit

from .conftest import CUDA, assert_same_weights, weights

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU "
                                 "(torch.cuda.is_available() is False here)")]

TINY = dict(hidden_layer_sizes=(32,), max_iter=2, batch_size=64, random_state=0)


def _labels(name, y):
    caps = aekit.get_model(name).capabilities
    return y if caps.conditional or caps.semi_supervised else None


def _skip_without_bf16(precision):
    if precision == "bf16-mixed" and not torch.cuda.is_bf16_supported(including_emulation=False):
        pytest.skip("this GPU has no native bfloat16 (compute capability < 8.0)")


@pytest.mark.parametrize("precision", ["32", "bf16-mixed", "16-mixed"])
@pytest.mark.parametrize("name", aekit.list_models())
def test_every_model_fits_and_scores_on_cuda(name, precision, digits):
    _skip_without_bf16(precision)
    X, y = digits
    X, y = X[:512], y[:512]
    model = aekit.get_model(name, precision=precision, device="cuda", **TINY)
    model.fit(X, _labels(name, y))
    assert next(model.module_.parameters()).device.type == "cuda"
    assert np.isfinite(model.history_["loss"]).all()
    given = (y[:50],) if model.capabilities.conditional else ()
    codes = model.transform(X[:50], *given)
    assert isinstance(codes, np.ndarray) and np.isfinite(codes).all()
    scores = model.score_samples(X[:50], *given)
    assert scores.shape == (50,) and np.isfinite(scores).all()


@pytest.mark.parametrize("precision", ["32", "bf16-mixed", "16-mixed"])
def test_conv_networks_on_image_rows(precision, digits):
    _skip_without_bf16(precision)
    X = digits[0][:256].reshape(-1, 8, 8)
    model = aekit.VAE(architecture="conv", likelihood="bernoulli", precision=precision,
                      device="cuda", **TINY).fit(X)
    assert np.isfinite(model.score_samples(X[:20])).all()


def test_fit_leaves_every_global_random_state_alone(digits):
    X = digits[0][:256]
    before = (torch.get_rng_state(), torch.cuda.get_rng_state_all(), np.random.get_state()[1])
    aekit.VAE(device="cuda", **TINY).fit(X)
    after = (torch.get_rng_state(), torch.cuda.get_rng_state_all(), np.random.get_state()[1])
    assert torch.equal(before[0], after[0])
    assert all(torch.equal(a, b) for a, b in zip(before[1], after[1]))
    np.testing.assert_array_equal(before[2], after[2])


@pytest.mark.parametrize("name", ["ae", "vae", "vq_vae"])
def test_scores_on_cuda_match_the_cpu(tmp_path, name, digits):
    X = digits[0][:300]
    model = aekit.get_model(name, likelihood="bernoulli", device="cpu", **TINY).fit(X)
    model.save(str(tmp_path / "m.safetensors"))
    on_gpu = aekit.load(str(tmp_path / "m.safetensors"), device="cuda")
    assert next(on_gpu.module_.parameters()).device.type == "cuda"
    np.testing.assert_allclose(on_gpu.score_samples(X), model.score_samples(X), rtol=1e-4,
                               atol=1e-3)
    np.testing.assert_allclose(on_gpu.transform(X), model.transform(X), rtol=1e-4, atol=1e-4)


def test_a_tsne_map_fitted_on_cuda_places_rows_as_on_the_cpu(tmp_path, digits):
    """The map and the placement run on the host (openTSNE); the networks on the GPU. A
    CUDA-fitted model loaded on the CPU places new rows where the CUDA one does."""
    pytest.importorskip("openTSNE")
    X, X_new = digits[0][:300], digits[0][300:340]
    model = aekit.get_model("neighbor_ae", embedding="tsne", device="cuda", **TINY).fit(X)
    assert model.module_.reference_codes.device.type == "cuda"
    codes = model.transform(X_new)
    assert np.isfinite(model.inverse_transform(codes)).all()
    model.save(str(tmp_path / "m.safetensors"))
    on_cpu = aekit.load(str(tmp_path / "m.safetensors"), device="cpu")
    np.testing.assert_array_equal(on_cpu.transform(X_new), codes)


@pytest.mark.parametrize("name", ["ae", "vae", "vq_vae"])
def test_resume_is_bit_identical_with_deterministic_algorithms(tmp_path, name, digits):
    """On CUDA a resumed run gives the uninterrupted run's bits with ``deterministic=True``
    (the README's "Scaling out")."""
    X = digits[0][:512]
    params = dict(TINY, max_iter=4, device="cuda", deterministic=True)
    full = aekit.get_model(name, **params).fit(X)
    aekit.get_model(name, **{**params, "max_iter": 2}).fit(X, checkpoint_dir=str(tmp_path))
    resumed = aekit.get_model(name, **params).fit(X, checkpoint_dir=str(tmp_path),
                                                  resume=True)
    assert_same_weights(weights(resumed), weights(full))


def test_a_run_repeats_bit_for_bit_with_deterministic_algorithms(digits):
    X = digits[0][:512]
    a = aekit.VAE(device="cuda", deterministic=True, **TINY).fit(X)
    b = aekit.VAE(device="cuda", deterministic=True, **TINY).fit(X)
    assert_same_weights(weights(a), weights(b))


def test_early_stopping_on_cuda_trains_on_views(digits):
    X = digits[0][:512]
    model = aekit.AE(device="cuda", early_stopping=True, **TINY).fit(X)
    assert "val_loss" in model.history_


@pytest.mark.parametrize("binarize", [None, "dynamic"])
def test_early_stopping_holds_out_the_same_rows_on_cuda_as_on_the_cpu(digits, binarize):
    """The split is drawn by a host generator: a CPU-fitted model and a model trained on
    from it on a GPU validate on the same rows, binarized the same way."""
    from aekit.training.loop import _split

    X = torch.as_tensor(digits[0][:500])
    est = aekit.VAE(early_stopping=True, binarize=binarize, likelihood="bernoulli", **TINY)
    on = {d: _split(est, X.to(d), None, torch.Generator().manual_seed(7))
          for d in ("cpu", "cuda")}
    assert torch.equal(on["cpu"].train_index, on["cuda"].train_index.cpu())
    val = {d: s.x_val if binarize else s.x_val.rows() for d, s in on.items()}
    assert val["cuda"].device.type == "cuda"
    assert torch.equal(val["cpu"], val["cuda"].cpu())
