"""The training loop: non-finite losses, checkpoints and resume, mixed precision."""

import json
import warnings

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from sklearn.exceptions import ConvergenceWarning
from torch._inductor.exc import InvalidCxxCompiler

import aekit
from aekit.exceptions import InputError
from aekit.runtime import compiled
from aekit.training.checkpoint import CHECKPOINT_NAME, checkpoint_sha256, checkpoint_weights

from .conftest import SMALL, assert_same_weights, history_without_time, weights


def test_exploding_learning_rate_stops_restores_finite_weights_and_explains(digits):
    X, _ = digits
    model = aekit.AE(learning_rate=1e12, **{**SMALL, "max_iter": 20})
    with pytest.warns(ConvergenceWarning, match=r"diverged at epoch \d+, step \d+.*learning_rate"):
        model.fit(X)
    assert all(torch.isfinite(v).all() for v in model.module_.state_dict().values())
    assert model.n_iter_ < 20
    assert np.all(np.isfinite(model.transform(X[:5])))


def test_on_nan_raise_raises_at_the_step():
    X = np.full((20, 64), 1e19, dtype=np.float32)
    with pytest.raises(aekit.training.DivergenceError, match="epoch 1, step 1"):
        aekit.AE(on_nan="raise", scale="none", **SMALL).fit(X)


def test_an_epoch_that_skipped_most_minibatches_is_not_a_good_epoch(digits):
    X, _ = digits
    X = X[:384].copy()
    X[::24] = 1e19         # 16 poisoned rows: most minibatches (not all) hold one
    model = aekit.AE(on_nan="skip_batch", scale="none",
                     **{**SMALL, "max_iter": 3, "batch_size": 32})
    with pytest.warns(ConvergenceWarning, match="minibatches skipped for non-finite losses"):
        model.fit(X)
    assert model.n_iter_ == 0 and model.history_ == {}      # no epoch counted as good
    assert all(np.isfinite(p.detach().numpy()).all() for p in model.module_.parameters())
    assert np.isfinite(model.score_samples(digits[0][:10])).all()


@pytest.mark.parametrize("name", ["ae", "denoising_ae", "wae_mmd"])
def test_restore_on_data_too_large_for_float32_ends_in_a_clean_refusal(name):
    """Finite but huge data: training stops and restores, and then no code distribution can
    be fitted; the fit fails with a message instead of a linear-algebra traceback."""
    X = np.random.default_rng(0).random((64, 6)).astype(np.float32) * 3e38
    model = aekit.get_model(name, scale="none", **SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with pytest.raises(aekit.DivergenceError, match="standardise the features"):
            model.fit(X)
    assert not hasattr(model, "n_iter_")


def test_on_nan_skip_batch_skips_only_the_bad_minibatches(digits):
    X, _ = digits
    X = X[:256].copy()
    X[0] = 1e19            # one poisoned row: only its minibatch has an infinite loss
    model = aekit.AE(on_nan="skip_batch", scale="none",
                     **{**SMALL, "max_iter": 3, "batch_size": 32})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(X)
    assert model.history_["skipped_batches"] == [1.0, 1.0, 1.0]
    assert np.all(np.isfinite(model.history_["loss"]))


@pytest.mark.parametrize("early_stopping", [False, True])
def test_resume_is_bit_identical_to_an_uninterrupted_run(digits, tmp_path, early_stopping):
    X, _ = digits
    params = dict(SMALL, early_stopping=early_stopping, n_iter_no_change=50)
    full = aekit.VAE(**{**params, "max_iter": 6}).fit(X, checkpoint_dir=tmp_path / "full")
    # "interrupted" after 3 epochs, then resumed to 6 in a new estimator
    aekit.VAE(**{**params, "max_iter": 3}).fit(X, checkpoint_dir=tmp_path / "run")
    resumed = aekit.VAE(**{**params, "max_iter": 6}).fit(X, checkpoint_dir=tmp_path / "run",
                                                         resume=True)
    assert_same_weights(weights(full), weights(resumed))
    assert history_without_time(full) == history_without_time(resumed)
    assert resumed.n_iter_ == 6 and len(resumed.history_["time"]) == 6


def test_a_resumed_fp16_run_keeps_its_gradient_scale(digits, tmp_path):
    """The fp16 gradient scaler's state is part of the checkpoint: a resumed run continues
    with the scale the interrupted one had reached, not the initial 65536."""
    X, _ = digits
    params = dict(SMALL, precision="16-mixed", learning_rate=0.05, n_iter_no_change=50)
    full = aekit.VAE(**{**params, "max_iter": 4}).fit(X, checkpoint_dir=tmp_path / "full")
    aekit.VAE(**{**params, "max_iter": 2}).fit(X, checkpoint_dir=tmp_path / "run")
    with safe_open(str(tmp_path / "run" / CHECKPOINT_NAME), framework="pt") as f:
        scaler = json.loads(f.metadata()["aekit"])["scaler"]
    assert set(scaler) >= {"scale", "_growth_tracker"}
    resumed = aekit.VAE(**{**params, "max_iter": 4}).fit(X, checkpoint_dir=tmp_path / "run",
                                                         resume=True)
    assert_same_weights(weights(full), weights(resumed))
    assert history_without_time(full) == history_without_time(resumed)


def test_a_checkpoint_from_another_device_type_is_refused(digits, tmp_path):
    X, _ = digits
    aekit.AE(**SMALL).fit(X, checkpoint_dir=tmp_path)
    path = tmp_path / CHECKPOINT_NAME
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["aekit"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta["rng_device"] = "cuda"     # as a CUDA run writes it, digest included
    meta["sha256"] = checkpoint_sha256(tensors, meta)
    save_file(tensors, str(path), metadata={"aekit": json.dumps(meta)})
    with pytest.raises(ValueError, match="written by a run on cuda and this run is on cpu"):
        aekit.AE(**SMALL).fit(X, checkpoint_dir=tmp_path, resume=True)


def test_fit_leaves_every_global_generator_alone(digits):
    X, _ = digits
    cpu = torch.get_rng_state()
    cuda_seed_calls = []
    original = torch.cuda.manual_seed_all
    torch.cuda.manual_seed_all = lambda seed: cuda_seed_calls.append(seed)
    try:
        aekit.VAE(**SMALL).fit(X)
    finally:
        torch.cuda.manual_seed_all = original
    assert torch.equal(cpu, torch.get_rng_state())
    assert cuda_seed_calls == []        # torch.manual_seed would reseed every CUDA generator


def test_checkpoint_holds_the_weights_of_the_last_epoch(digits, tmp_path):
    X, _ = digits
    model = aekit.AE(**SMALL).fit(X, checkpoint_dir=tmp_path, checkpoint_every=2)
    saved = checkpoint_weights(tmp_path)
    for name, tensor in model.module_.state_dict().items():
        if not name.startswith("code_"):   # set after training, not part of the loop state
            np.testing.assert_array_equal(saved[name], tensor.numpy())
    assert not list(tmp_path.glob("*.tmp"))


def test_resume_without_a_checkpoint_starts_afresh(digits, tmp_path):
    X, _ = digits
    a = aekit.AE(**SMALL).fit(X, checkpoint_dir=tmp_path / "new", resume=True)
    b = aekit.AE(**SMALL).fit(X)
    assert_same_weights(weights(a), weights(b))


@pytest.mark.parametrize("change", ["params", "data", "model"])
def test_a_checkpoint_of_another_run_is_refused(digits, tmp_path, change):
    X, _ = digits
    aekit.AE(**SMALL).fit(X, checkpoint_dir=tmp_path)
    other = {"params": (aekit.AE(n_components=3, **SMALL), X, "parameters n_components differ"),
             "data": (aekit.AE(**SMALL), X[:-1], "n_samples"),
             "model": (aekit.VAE(**SMALL), X, "class")}[change]
    with pytest.raises(ValueError, match=f"belongs to another run.*{other[2]}"):
        other[0].fit(other[1], checkpoint_dir=tmp_path, resume=True)


def test_a_corrupt_checkpoint_is_refused(digits, tmp_path):
    X, _ = digits
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable aekit checkpoint"):
        aekit.AE(**SMALL).fit(X, checkpoint_dir=tmp_path, resume=True)


def test_resume_needs_a_checkpoint_dir(digits):
    with pytest.raises(ValueError, match="checkpoint_dir"):
        aekit.AE(**SMALL).fit(digits[0], resume=True)


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_trains_like_float32(digits, digits_test, precision):
    X, _ = digits
    X_test, _ = digits_test
    params = dict(SMALL, likelihood="bernoulli", max_iter=15, n_importance_samples=8)
    fp32 = aekit.VAE(**params).fit(X)
    mixed = aekit.VAE(precision=precision, **params).fit(X)
    assert mixed.module_.encoder[0].weight.dtype == torch.float32
    assert mixed.history_["loss"][-1] == pytest.approx(fp32.history_["loss"][-1], rel=0.03)
    assert mixed.score(X_test) == pytest.approx(fp32.score(X_test), rel=0.03)
    assert mixed.score_samples(X_test[:4]).dtype == np.float32


def test_precision_is_saved_with_the_model(digits, tmp_path):
    X, _ = digits
    model = aekit.AE(precision="bf16-mixed", **SMALL).fit(X)
    model.save(tmp_path / "m.safetensors")
    assert aekit.load(tmp_path / "m.safetensors").precision == "bf16-mixed"


def test_compiled_and_eager_give_the_same_loss_on_the_same_batch(digits):
    X, _ = digits
    model = aekit.VAE(likelihood="bernoulli", **{**SMALL, "max_iter": 1}).fit(X)
    x = torch.as_tensor(X[:64])
    losses = []
    for use_compile in (False, True):
        ctx = aekit.FitContext.standalone(torch.Generator().manual_seed(0))  # the same noise
        fn = compiled(model._loss, "the loss") if use_compile else model._loss
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message="compile=True")   # no silent fallback
            losses.append(fn(x, None, ctx).total.item())
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)


def test_compile_falls_back_to_eager_with_a_warning(digits, monkeypatch):
    def broken(fn, **kwargs):
        def fail(*args):
            raise InvalidCxxCompiler()      # what inductor raises without a C++ compiler
        return fail

    monkeypatch.setattr(torch, "compile", broken)
    X, _ = digits
    with pytest.warns(RuntimeWarning, match="compiling the training loss failed.*C\\+\\+"):
        model = aekit.AE(compile=True, **SMALL).fit(X)
    reference = aekit.AE(**SMALL).fit(X)
    assert_same_weights(weights(model), weights(reference))


def test_compiled_scoring_sees_one_chunk_shape_and_scores_as_eager(digits, monkeypatch):
    """With compile=True, score_samples pads a short last chunk to the chunk size (and drops
    the padding's scores), so the compiled function compiles for one shape, not two; the
    scores are those of the eager path, row for row: bit for bit where the eager path sees
    the same chunks (the matrix kernels of a 2-row and a 16-row batch may round a row
    differently by an ulp), and to float32 rounding against the eager path's own 2-row
    last chunk."""
    from aekit.estimator import inference

    X, _ = digits
    model = aekit.VAE(likelihood="bernoulli", **{**SMALL, "max_iter": 1}).fit(X / 16.0)
    rows = X[:50] / 16.0
    monkeypatch.setattr(inference, "rows_per_chunk", lambda *a, **k: 16)  # 16+16+16+2 rows
    eager = model.score_samples(rows)
    # the padded chunk's rows, by hand: the last row repeated up to 16 in the last chunk
    eager_padded = model.score_samples(np.concatenate([rows, np.repeat(rows[-1:], 14, 0)]))
    shapes = []

    def recording(fn, **kwargs):            # stands in for torch.compile: records shapes
        def run(x, eps):
            shapes.append(tuple(x.shape))
            return fn(x, eps)
        return run

    monkeypatch.setattr(torch, "compile", recording)
    model.set_params(compile=True)
    scores = model.score_samples(rows)
    assert set(shapes) == {(16, 64)} and len(shapes) == 4
    np.testing.assert_array_equal(scores, eager_padded[:50])
    np.testing.assert_allclose(scores, eager, rtol=1e-6)


def test_compile_does_not_rerun_a_step_that_failed_for_another_reason(monkeypatch):
    """Only the compiler's own errors fall back to eager: an out-of-memory error or a device
    assert inside the compiled call is raised as it is, never run a second time (which would
    apply a VQ-VAE's EMA update twice and draw its noise twice)."""
    calls = []

    def fn(x):
        calls.append(x)
        return x

    def out_of_memory(f, **kwargs):
        def fail(*args):
            raise torch.OutOfMemoryError("CUDA out of memory")
        return fail

    monkeypatch.setattr(torch, "compile", out_of_memory)
    with pytest.raises(torch.OutOfMemoryError):
        compiled(fn, "the loss")(1)
    assert calls == []


def test_dynamic_binarization_trains_on_fresh_binary_pixels(digits):
    X, _ = digits
    seen = []

    class Spy(aekit.VAE):
        def _loss(self, x, y, ctx):
            seen.append(x.detach().clone())
            return super()._loss(x, y, ctx)

    Spy(binarize="dynamic", likelihood="bernoulli", **{**SMALL, "max_iter": 2}).fit(X)
    batches = torch.cat(seen)
    assert set(torch.unique(batches).tolist()) == {0.0, 1.0}
    assert abs(batches.mean().item() - float(X.mean())) < 0.01
    # each epoch sees every row once; a fixed binarization would give equal sums
    per_epoch = len(seen) // 2
    first, second = torch.cat(seen[:per_epoch]).sum(), torch.cat(seen[per_epoch:]).sum()
    assert first != second
    with pytest.raises(ValueError, match="binarize='dynamic'.*\\[0, 1\\]"):
        aekit.VAE(binarize="dynamic", **SMALL).fit(X - 0.5)


def test_fixed_binarization_of_a_test_set_is_reproducible(digits):
    X, _ = digits
    a, b = aekit.datasets.binarize(X, random_state=0), aekit.datasets.binarize(X, random_state=0)
    np.testing.assert_array_equal(a, b)
    assert abs(a.mean() - X.mean()) < 0.01


def test_a_checkpoint_with_other_labels_is_refused(digits, tmp_path):
    X, y = digits
    aekit.CVAE(**SMALL).fit(X, y, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="belongs to another run.*labels_sha256"):
        aekit.CVAE(**SMALL).fit(X, y[::-1], checkpoint_dir=tmp_path, resume=True)
    resumed = aekit.CVAE(**{**SMALL, "max_iter": 6}).fit(X, y, checkpoint_dir=tmp_path,
                                                         resume=True)
    assert resumed.n_iter_ == 6


def test_a_fresh_fit_over_another_runs_checkpoint_needs_overwrite(digits, tmp_path):
    X, _ = digits
    aekit.AE(**SMALL).fit(X, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="holds the checkpoint of an earlier run"):
        aekit.AE(n_components=3, **SMALL).fit(X, checkpoint_dir=tmp_path)
    model = aekit.AE(n_components=3, **SMALL).fit(X, checkpoint_dir=tmp_path, overwrite=True)
    resumed = aekit.AE(n_components=3, **SMALL).fit(X, checkpoint_dir=tmp_path, resume=True)
    assert_same_weights(weights(model), weights(resumed))


def test_a_network_too_large_for_memory_is_refused_before_allocation(digits):
    X, _ = digits
    model = aekit.AE(n_components=10**9, **SMALL)
    with pytest.raises(ValueError, match="network of .* parameters .* use a smaller"):
        model.fit(X)
    assert not hasattr(model, "module_")


def test_cosine_schedule_scales_every_optimizer_along_half_a_cosine(digits, tmp_path):
    """Each epoch's step size is learning_rate * (1 + cos(pi (e - 1) / max_iter)) / 2, for
    every optimizer in proportion (the AAE's discriminator too), and the optimizers ran with
    it: the checkpointed optimizer state holds the last epoch's."""
    X, _ = digits
    model = aekit.AAE(**{**SMALL, "max_iter": 4}, learning_rate=1e-3,
                      discriminator_learning_rate=4e-3, learning_rate_schedule="cosine")
    model.fit(X, checkpoint_dir=tmp_path)
    expected = [1e-3 * (1 + np.cos(np.pi * e / 4)) / 2 for e in range(4)]
    np.testing.assert_allclose(model.history_["learning_rate"], expected, rtol=1e-12)
    with safe_open(str(tmp_path / CHECKPOINT_NAME), framework="pt") as f:
        optimizers = json.loads(f.metadata()["aekit"])["optimizers"]
    rates = [group["lr"] for o in optimizers for group in o["param_groups"]]
    np.testing.assert_allclose(rates, [expected[-1], 4 * expected[-1]], rtol=1e-12)


def test_cosine_schedule_changes_training_only_after_the_first_epoch(digits):
    X, _ = digits
    runs = {s: [aekit.AE(**{**SMALL, "max_iter": n}, learning_rate_schedule=s).fit(X)
                for n in (1, 3)] for s in ("constant", "cosine")}
    assert_same_weights(weights(runs["constant"][0]), weights(runs["cosine"][0]))
    assert runs["constant"][1].history_["loss"][2] != runs["cosine"][1].history_["loss"][2]
    assert "learning_rate" not in runs["constant"][1].history_


def test_plateau_schedule_divides_by_five_on_each_stall_then_stops(digits):
    """With a tol nothing can beat, every epoch after the first stalls: with
    n_iter_no_change=1 the step size falls by 5x three times and the fourth stall stops."""
    X, _ = digits
    model = aekit.AE(**{**SMALL, "max_iter": 20}, learning_rate=1e-3, tol=1e9,
                     n_iter_no_change=1, learning_rate_schedule="plateau").fit(X)
    assert model.n_iter_ == 5
    np.testing.assert_allclose(model.history_["learning_rate"],
                               [1e-3, 1e-3, 2e-4, 4e-5, 8e-6], rtol=1e-12)


def test_a_resumed_plateau_run_keeps_its_lowered_step_size(digits, tmp_path):
    """How often the step size was lowered is part of the checkpoint: interrupted after two
    decays, the resumed run goes on at learning_rate / 25 as the uninterrupted run did."""
    X, _ = digits
    params = dict(SMALL, learning_rate=1e-3, tol=1e9, n_iter_no_change=1,
                  learning_rate_schedule="plateau")
    full = aekit.AE(**{**params, "max_iter": 20}).fit(X, checkpoint_dir=tmp_path / "full")
    aekit.AE(**{**params, "max_iter": 3}).fit(X, checkpoint_dir=tmp_path / "run")
    resumed = aekit.AE(**{**params, "max_iter": 20}).fit(X, checkpoint_dir=tmp_path / "run",
                                                         resume=True)
    assert resumed.n_iter_ == full.n_iter_ == 5
    assert history_without_time(full) == history_without_time(resumed)
    assert_same_weights(weights(full), weights(resumed))


def test_an_unknown_learning_rate_schedule_is_refused(digits):
    X, _ = digits
    with pytest.raises(ValueError, match="learning_rate_schedule"):
        aekit.AE(**SMALL, learning_rate_schedule="linear").fit(X)


def test_a_checkpoint_written_before_a_parameter_existed_resumes_at_its_default(digits, tmp_path):
    """An older checkpoint's run has no entry for a parameter added since: it resumes when the
    parameter is at its default, and is refused as another run when it is not."""
    X, _ = digits
    aekit.AE(**{**SMALL, "max_iter": 2}).fit(X, checkpoint_dir=tmp_path)
    path = tmp_path / CHECKPOINT_NAME
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["aekit"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    del meta["run"]["params"]["learning_rate_schedule"], meta["lr_decays"]
    meta["sha256"] = checkpoint_sha256(tensors, meta)
    save_file(tensors, str(path), metadata={"aekit": json.dumps(meta)})
    with pytest.raises(ValueError, match="parameters learning_rate_schedule differ"):
        aekit.AE(**SMALL, learning_rate_schedule="cosine").fit(X, checkpoint_dir=tmp_path,
                                                                resume=True)
    resumed = aekit.AE(**SMALL).fit(X, checkpoint_dir=tmp_path, resume=True)
    assert resumed.n_iter_ == 5
    assert_same_weights(weights(resumed), weights(aekit.AE(**SMALL).fit(X)))


def test_the_validation_split_is_drawn_on_the_host_and_a_gpu_checkpoint_of_the_old_split_is_refused(
        digits, tmp_path, monkeypatch):
    """One random_state holds out the same rows on any device: the split generator is a host
    generator whatever the fit's device. A GPU checkpoint written when the split was drawn on
    the GPU held out other rows: resuming it would train on others, so it is refused."""
    from aekit.training import loop

    X, _ = digits
    seen = []
    real = loop._split
    monkeypatch.setattr(loop, "_split", lambda est, x, y, g: seen.append(g.device) or real(
        est, x, y, g))
    params = {**SMALL, "max_iter": 2, "early_stopping": True}
    aekit.AE(**params).fit(X, checkpoint_dir=tmp_path)
    assert seen == [torch.device("cpu")]
    path = tmp_path / CHECKPOINT_NAME
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["aekit"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    assert meta["run"]["split"] == "on the host"
    # an older CPU checkpoint (no split entry) drew the same rows: it resumes
    del meta["run"]["split"]
    meta["sha256"] = checkpoint_sha256(tensors, meta)
    save_file(tensors, str(path), metadata={"aekit": json.dumps(meta)})
    assert aekit.AE(**{**params, "max_iter": 3}).fit(X, checkpoint_dir=tmp_path,
                                                     resume=True).n_iter_ == 3
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["aekit"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    del meta["run"]["split"]
    meta["rng_device"] = "cuda"
    meta["sha256"] = checkpoint_sha256(tensors, meta)
    save_file(tensors, str(path), metadata={"aekit": json.dumps(meta)})
    with pytest.raises(ValueError, match="validation rows were drawn on the GPU"):
        aekit.AE(**{**params, "max_iter": 4}).fit(X, checkpoint_dir=tmp_path, resume=True)


# ------------------------------------------------------------------ warm_start


class _LoopReached(Exception):
    pass


def _labels(name, y):
    caps = aekit.get_model(name).capabilities
    return y if caps.conditional or caps.semi_supervised else None


@pytest.mark.parametrize("name", aekit.list_models())
def test_warm_start_hands_the_loop_every_fitted_weight_and_a_failure_keeps_the_model(
        name, digits, monkeypatch):
    """The networks the loop is given hold exactly the fitted weights and buffers (a prior,
    a codebook), except what the fit computes from its data (the standardisation); a warm
    fit that fails leaves the fitted model as it was."""
    X, y = digits
    X, y = X[:400], y[:400]
    model = aekit.get_model(name, **{**SMALL, "max_iter": 2}).fit(X, _labels(name, y))
    module, n_iter, history = model.module_, model.n_iter_, model.history_
    before = {k: v.clone() for k, v in module.state_dict().items()}
    seen = {}

    def loop_entry(est, *args, **kwargs):
        seen.update({k: v.clone() for k, v in est.module_.state_dict().items()})
        raise _LoopReached

    monkeypatch.setattr(aekit.training.loop, "fit_loop", loop_entry)
    model.set_params(warm_start=True, learning_rate=1e-4)
    with pytest.raises(_LoopReached):
        model.fit(X, _labels(name, y))
    carried = list(model._warm_state())
    assert carried and set(carried) <= set(seen)
    for key in carried:
        assert torch.equal(seen[key], before[key]), key
    assert model.module_ is module and model.n_iter_ == n_iter and model.history_ is history
    assert_same_weights(before, weights(model))


def test_warm_start_trains_on_from_the_fitted_model(digits):
    X, _ = digits
    model = aekit.VAE(**{**SMALL, "max_iter": 10}).fit(X)
    last = model.history_["loss"][-1]
    cold = aekit.VAE(**{**SMALL, "max_iter": 2}).fit(X)
    model.set_params(warm_start=True, max_iter=2)
    assert model.fit(X) is model
    assert model.n_iter_ == 2 and len(model.history_["loss"]) == 2    # this fit's epochs
    assert model.history_["loss"][0] < cold.history_["loss"][0] - 5
    assert abs(model.history_["loss"][0] - last) < 2


def test_warm_start_without_a_fitted_model_is_a_fresh_fit(digits):
    X, _ = digits
    cold = aekit.VAE(**SMALL).fit(X)
    warm = aekit.VAE(warm_start=True, **SMALL).fit(X)
    assert_same_weights(weights(cold), weights(warm))
    assert history_without_time(cold) == history_without_time(warm)


def test_warm_start_trains_a_loaded_model_on(digits, tmp_path):
    X, _ = digits
    model = aekit.VAE(**SMALL).fit(X)
    model.save(tmp_path / "model.aekit")
    loaded = aekit.load(tmp_path / "model.aekit").set_params(warm_start=True, max_iter=3)
    again = aekit.VAE(**SMALL).fit(X).set_params(warm_start=True, max_iter=3)
    assert_same_weights(weights(loaded.fit(X)), weights(again.fit(X)))


@pytest.mark.parametrize("change", [{"n_components": 3}, {"hidden_layer_sizes": (16,)},
                                    {"width": 32}])
def test_warm_start_refuses_networks_of_another_shape_and_keeps_the_model(digits, change):
    X, _ = digits
    model = aekit.VAE(**SMALL).fit(X)
    before = weights(model)
    model.set_params(warm_start=True, **{k: v for k, v in change.items() if k != "width"})
    rows = X[:, :change["width"]] if "width" in change else X   # data of another width
    with pytest.raises(InputError, match=r"warm_start=True: .* has shape .*, was .*"
                                               r"warm_start=False"):
        model.fit(rows)
    assert_same_weights(before, weights(model))
    assert model.n_iter_ == SMALL["max_iter"]


def test_a_diverging_warm_fit_keeps_the_fitted_model(digits):
    X, _ = digits
    model = aekit.AE(**SMALL).fit(X)
    before, history = weights(model), model.history_
    model.set_params(warm_start=True, learning_rate=1e12, on_nan="raise")
    with pytest.raises(aekit.DivergenceError):
        model.fit(X)
    assert_same_weights(before, weights(model))
    assert model.history_ is history
    np.testing.assert_array_equal(model.transform(X[:5]),
                                  aekit.AE(**SMALL).fit(X).transform(X[:5]))


def test_a_warm_fit_resumes_bit_identically(digits, tmp_path):
    X, _ = digits
    start = aekit.VAE(**SMALL).fit(X)
    start.save(tmp_path / "start.aekit")
    warm = dict(warm_start=True, learning_rate=3e-4)
    full = aekit.load(tmp_path / "start.aekit").set_params(max_iter=6, **warm)
    full.fit(X, checkpoint_dir=tmp_path / "full")
    aekit.load(tmp_path / "start.aekit").set_params(max_iter=3, **warm).fit(
        X, checkpoint_dir=tmp_path / "run")            # "interrupted" after 3 epochs
    # resumed in a new process: the starting model is built again, the checkpoint wins
    resumed = aekit.load(tmp_path / "start.aekit").set_params(max_iter=6, **warm)
    resumed.fit(X, checkpoint_dir=tmp_path / "run", resume=True)
    assert_same_weights(weights(full), weights(resumed))
    assert history_without_time(full) == history_without_time(resumed)


def test_a_warm_stacked_ae_skips_greedy_pretraining(digits, monkeypatch):
    X, _ = digits
    model = aekit.get_model("stacked_ae", **{**SMALL, "hidden_layer_sizes": (32, 16)}).fit(X)
    calls = []
    original = aekit.models.ae.AE.fit
    monkeypatch.setattr(aekit.models.ae.AE, "fit",
                        lambda self, *a, **k: calls.append(type(self).__name__)
                        or original(self, *a, **k))
    model.set_params(warm_start=True, max_iter=1).fit(X)
    assert "_LayerAE" not in calls
    aekit.get_model("stacked_ae", **{**SMALL, "hidden_layer_sizes": (32, 16)}).fit(X)
    assert "_LayerAE" in calls          # the probe sees pretraining when it happens
