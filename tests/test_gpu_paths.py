"""The CUDA and NCCL paths, checked on the CPU: what would be called on a GPU (mocks), how
often a training step reads the device back, memory sizing and deterministic settings.
What only a GPU can settle is in tests/test_cuda.py and benchmarks/gpu_check.py."""

import os
import sys
from collections import Counter

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

import aekit
from aekit import runtime
from aekit.data.streaming import RowView
from aekit.estimator import inference
from aekit.exceptions import InputError
from aekit.runtime import deterministic_algorithms, resolve_device
from aekit.training import FitContext, checkpoint, distributed

# ----------------------------------------------------------------- the general suite


def test_the_general_suite_runs_as_on_a_machine_without_cuda():
    assert not torch.cuda.is_available()
    assert resolve_device("auto") == torch.device("cpu")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""       # for the CLI and torchrun tests


# ------------------------------------------------------ process group and devices


@pytest.fixture
def torchrun_env(monkeypatch):
    """Rank 1 of 2 on this machine, as torchrun sets it, with no process group yet."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set_device", d)))
    return calls


def _fake_group(monkeypatch, calls):
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group",
                        lambda **kw: calls.append(("init", kw)))
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 1)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(distributed.atexit, "register", lambda fn: None)


def test_setup_on_cuda_creates_gloo_and_nccl_bound_to_the_local_gpu(monkeypatch, torchrun_env):
    _fake_group(monkeypatch, torchrun_env)
    device = runtime.local_device(torch.device("cuda"))
    world = distributed.setup(device)
    assert device == torch.device("cuda", 1)
    assert world == distributed.World(1, 2)
    assert torchrun_env == [("set_device", torch.device("cuda", 1)),
                            ("init", {"backend": "cpu:gloo,cuda:nccl",
                                      "device_id": torch.device("cuda", 1)})]


def test_setup_on_cpu_creates_gloo(monkeypatch, torchrun_env):
    _fake_group(monkeypatch, torchrun_env)
    device = runtime.local_device(torch.device("cpu"))
    distributed.setup(device)
    assert device == torch.device("cpu")
    assert torchrun_env == [("init", {"backend": "gloo"})]


def test_an_explicit_gpu_under_torchrun_must_be_the_local_ranks(torchrun_env):
    assert runtime.local_device(torch.device("cuda", 1)) == torch.device("cuda", 1)
    with pytest.raises(InputError, match="LOCAL_RANK.*cuda:1.*use device='cuda'"):
        runtime.local_device(torch.device("cuda", 0))


def test_one_visible_gpu_per_process_and_too_few_gpus(monkeypatch, torchrun_env):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)     # CUDA_VISIBLE_DEVICES
    assert runtime.local_device(torch.device("cuda")) == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(InputError, match="no GPU of its own: it has 2 CUDA device"):
        runtime.local_device(torch.device("cuda"))


def test_one_process_keeps_the_current_device(monkeypatch, torchrun_env):
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert runtime.local_device(torch.device("cuda", 1)) == torch.device("cuda", 1)
    assert runtime.local_device(torch.device("cuda")) == torch.device("cuda", 0)
    monkeypatch.delenv("LOCAL_RANK")
    assert runtime.local_device(torch.device("cuda")) == torch.device("cuda")
    assert torchrun_env == []           # no set_device outside a group of several


@pytest.mark.parametrize("backend, expected", [("gloo", "cpu"), ("cpu:gloo,cuda:nccl", "cpu"),
                                               ("nccl", "cuda:1")])
def test_collectives_take_host_tensors_wherever_the_group_has_gloo(monkeypatch, backend,
                                                                   expected):
    monkeypatch.setattr(distributed.dist, "get_backend", lambda: backend)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert distributed.collective_device() == torch.device(expected)


def test_epoch_sums_and_generator_states_go_to_gloo_as_host_tensors(monkeypatch):
    monkeypatch.setattr(distributed.dist, "get_backend", lambda: "cpu:gloo,cuda:nccl")
    seen = []

    def all_reduce(t):
        seen.append(("all_reduce", t.device, t.dtype))
        t.mul_(2)

    def all_gather(out, t):
        seen.append(("all_gather", t.device, t.dtype))
        for o in out:
            o.copy_(t)

    monkeypatch.setattr(distributed.dist, "all_reduce", all_reduce)
    monkeypatch.setattr(distributed.dist, "all_gather", all_gather)
    world = distributed.World(0, 2)
    sums = distributed.all_reduce_sums({"_seen": 3, "loss": torch.tensor(1.5)}, world)
    assert sums == {"_seen": 6.0, "loss": 3.0}
    state = torch.Generator().manual_seed(0).get_state()
    states = distributed.all_gather_bytes(state, world)
    assert len(states) == 2 and torch.equal(states[1], state)
    assert seen == [("all_reduce", torch.device("cpu"), torch.float64),
                    ("all_gather", torch.device("cpu"), torch.uint8)]


# ------------------------------------------------------------ syncs per training step

#: Tensor methods and functions that read a device tensor back to the host (a sync on
#: CUDA), or size their output by its values (not one_hot: with num_classes given, CUDA
#: checks the classes by a device assert, without a sync), and ``torch.tensor``, which
#: copies host data to the device (a synchronising copy from pageable memory)
READS_BACK = {"__bool__", "item", "__float__", "__int__", "__index__", "tolist", "cpu",
              "numpy", "nonzero", "bincount", "unique", "masked_select", "argwhere",
              "equal", "allclose", "__array__", "tensor"}
#: torch code that a call from aekit runs on its behalf: a read-back in there is charged to
#: aekit's line (e.g. a distribution built with argument validation checks its parameters
#: with ``bool(valid.all())``)
_THIN_WRAPPERS = ("torch/_tensor.py", "torch/overrides.py", "torch/functional.py",
                  "torch/nn/functional.py", "torch/distributions/")
_AEKIT = os.path.dirname(aekit.__file__)


def _in(frame, folders: tuple[str, ...]) -> bool:
    path = frame.f_code.co_filename.replace(os.sep, "/")
    return any(part in path for part in folders)


class ReadBacks(TorchFunctionMode):
    """Counts the calls in :data:`READS_BACK` that aekit's own code makes, by the line
    that makes them (torch's internals, e.g. an optimizer's, are not aekit's to change)."""

    def __init__(self):
        super().__init__()
        self.calls = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in READS_BACK:
            frame = sys._getframe(1)
            while frame is not None and _in(frame, _THIN_WRAPPERS):
                frame = frame.f_back
            if frame is not None and frame.f_code.co_filename.startswith(_AEKIT):
                where = os.path.relpath(frame.f_code.co_filename, _AEKIT)
                self.calls[f"{name} at {where}:{frame.f_lineno}"] += 1
        return func(*args, **(kwargs or {}))


def _fit_counting(name, X, y, n_rows, **params):
    extra = {"pretrain_max_iter": 0} if name == "stacked_ae" else {}
    model = aekit.get_model(name, hidden_layer_sizes=(8,), max_iter=1, batch_size=32,
                            random_state=0, device="cpu", **extra, **params)
    steps = []
    step = model._train_step
    model._train_step = lambda *a: steps.append(1) or step(*a)
    caps = model.capabilities
    labels = y[:n_rows] if caps.conditional or caps.semi_supervised else None
    with ReadBacks() as counter:
        model.fit(X[:n_rows], labels)
    return counter.calls, len(steps)


@pytest.mark.parametrize("name, params", [
    *[(name, {}) for name in aekit.list_models()],
    ("hvae", {"n_components": 4, "n_pseudo_inputs": 5}),       # a VampPrior on z2
])
def test_a_training_step_reads_the_device_back_once(name, params, digits):
    """One flag per step (is the loss finite on every rank), computed once: 8 more steps
    cost 8 more reads, whatever the model (VQ-VAE's codebook update and AAE's two
    optimizers included)."""
    X, y = digits
    few, n_few = _fit_counting(name, X, y, 64, **params)
    many, n_many = _fit_counting(name, X, y, 320, **params)
    assert (n_few, n_many) == (2, 10)
    extra = {k: many[k] - few.get(k, 0) for k in many if many[k] != few.get(k, 0)}
    assert sum(extra.values()) == n_many - n_few, extra
    assert all(call.startswith("__bool__ at training/distributed.py:") for call in extra)


def test_a_step_returns_its_flag_and_the_loop_does_not_ask_again(digits, monkeypatch):
    from aekit.training import step as step_module

    calls = []
    real = step_module.all_finite
    monkeypatch.setattr(step_module, "all_finite", lambda v, w: calls.append(1) or real(v, w))
    model = aekit.AE(hidden_layer_sizes=(8,), max_iter=1, batch_size=32, random_state=0,
                     device="cpu").fit(digits[0][:96])
    assert model.n_iter_ == 1
    assert len(calls) == 3              # three steps, one flag each


# -------------------------------------------------------------- VQ-VAE's codebook


def _vq_model(**params):
    vq = aekit.VQVAE(n_components=3, codebook_size=6, hidden_layer_sizes=(8,), max_iter=1,
                     random_state=0, device="cpu", **params)
    vq.module_ = vq._build((5,))
    return vq


def _reference_update(vq, z_e, codes, generator):
    """The codebook update as it was written with ``nonzero`` (reads the device back)."""
    from aekit.models.vqvae import EMA_EPSILON

    m, decay = vq.module_, vq.ema_decay
    one_hot = torch.nn.functional.one_hot(codes, vq.codebook_size).float()
    m.ema_count.mul_(decay).add_(one_hot.sum(0), alpha=1 - decay)
    m.ema_sum.mul_(decay).add_(one_hot.T @ z_e, alpha=1 - decay)
    n = m.ema_count.sum()
    count = (m.ema_count + EMA_EPSILON) / (n + vq.codebook_size * EMA_EPSILON) * n
    m.codebook.copy_(m.ema_sum / count[:, None])
    dead = (m.ema_count < vq.dead_code_threshold).nonzero().squeeze(1)
    return dead


def test_the_codebook_update_without_syncs_matches_the_written_out_one():
    vq = _vq_model()
    ref = _vq_model()
    ref.module_.load_state_dict(vq.module_.state_dict())
    g = torch.Generator().manual_seed(0)
    z_e = torch.randn(40, 3, generator=g)
    codes = torch.randint(6, (40,), generator=g)
    codes[codes == 5] = 4                   # code 5 unused: it dies below threshold 1
    vq.module_.ema_count.fill_(1.0)
    ref.module_.ema_count.fill_(1.0)
    one_hot = (codes[:, None] == torch.arange(6)).float()
    ctx = FitContext.standalone(torch.Generator().manual_seed(1))
    vq._update_codebook(z_e, one_hot, torch.tensor(True), ctx)
    dead = _reference_update(ref, z_e, codes, None)
    assert dead.tolist() == [5]
    alive = [0, 1, 2, 3, 4]
    for name in ("ema_count", "ema_sum", "codebook"):
        assert torch.equal(getattr(vq.module_, name)[alive], getattr(ref.module_, name)[alive])
    # the dead code is reset to a row of this minibatch, with a count of one
    assert vq.module_.ema_count[5] == 1.0
    assert (vq.module_.codebook[5] == z_e).all(1).any()
    assert torch.equal(vq.module_.ema_sum[5], vq.module_.codebook[5])


def test_a_non_finite_loss_leaves_the_codebook_as_it_was():
    vq = _vq_model()
    before = {k: v.clone() for k, v in vq.module_.state_dict().items()}
    z_e = torch.full((10, 3), float("nan"))
    one_hot = torch.zeros(10, 6)
    one_hot[:, 0] = 1
    ctx = FitContext.standalone(torch.Generator().manual_seed(1))
    vq._update_codebook(z_e, one_hot, torch.tensor(False), ctx)
    for name, value in vq.module_.state_dict().items():
        assert torch.equal(value, before[name]), name


# ---------------------------------------------------------- data on the device


def test_the_fingerprint_is_computed_once_per_fit(tmp_path, digits, monkeypatch):
    hashed = []
    real = checkpoint.hashlib.sha256
    monkeypatch.setattr(checkpoint.hashlib, "sha256",
                        lambda *a, **k: hashed.append(len(a[0]) if a else 0) or real(*a, **k))
    X = digits[0][:200]
    aekit.AE(hidden_layer_sizes=(8,), max_iter=4, random_state=0, device="cpu").fit(
        X, checkpoint_dir=str(tmp_path), checkpoint_every=1)
    assert hashed.count(X.nbytes) == 1      # four checkpoints, one digest of the rows


def test_a_cached_fingerprint_follows_in_place_changes():
    x = torch.arange(6.0)
    first = checkpoint.data_fingerprint(x)
    assert checkpoint.data_fingerprint(x) == first
    x.add_(1)
    assert checkpoint.data_fingerprint(x) != first
    assert checkpoint.data_fingerprint(x) == checkpoint.data_fingerprint(torch.arange(1.0, 7.0))


def test_the_validation_split_holds_views_not_copies(digits):
    from aekit.training.loop import _split

    x = torch.as_tensor(digits[0][:100])
    est = aekit.AE(early_stopping=True, validation_fraction=0.2)
    x_tr, _, x_val, _, train_index = _split(est, x, None, torch.Generator().manual_seed(0))
    assert torch.equal(train_index, x_tr.index)
    assert isinstance(x_tr, RowView) and x_tr.base is x and x_val.base is x
    assert x_tr.shape == (80, 64) and len(x_val) == 20
    rows = torch.cat([x_tr.index, x_val.index]).sort().values
    assert torch.equal(rows, torch.arange(100))
    idx = torch.tensor([3, 0, 7])
    assert torch.equal(x_tr[idx], x[x_tr.index[idx]])
    assert torch.equal(x_tr[5:9], x[x_tr.index[5:9]])
    # a torch function gets the gathered rows (the dynamic binarization of the loop)
    probs = torch.full((3, 2), 0.5)
    assert torch.bernoulli(RowView(probs, torch.tensor([2, 0])),
                           generator=torch.Generator().manual_seed(0)).shape == (2, 2)


def test_a_stream_moves_the_epochs_indices_to_the_host_once(tmp_path):
    from aekit.data.sources import open_source
    from aekit.data.streaming import StreamedRows

    X = np.arange(60, dtype=np.float32).reshape(20, 3)
    np.save(tmp_path / "x.npy", X)
    rows = StreamedRows(open_source(tmp_path / "x.npy"), torch.device("cpu"), 8)
    perm = torch.randperm(20, generator=torch.Generator().manual_seed(0))
    indices = [perm[i:i + 6] for i in range(0, 20, 6)]
    with ReadBacks() as counter:
        batches = list(rows.batches(indices))
    for idx, batch in zip(indices, batches):
        np.testing.assert_array_equal(batch.numpy(), X[idx.numpy()])
    assert sum(n for call, n in counter.calls.items() if call.startswith("cpu")) == 1


def _gpu(monkeypatch, free, reserved=0, allocated=0):
    asked = []
    monkeypatch.setattr(torch.cuda, "mem_get_info",
                        lambda device=None: asked.append(device) or (free, 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: reserved)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: allocated)
    return asked


def test_evaluation_chunks_fit_the_gpus_free_memory(monkeypatch, fitted_ae):
    gpu = torch.device("cuda", 0)
    asked = _gpu(monkeypatch, free=64 * 2**20, reserved=40 * 2**20, allocated=8 * 2**20)
    per_row = inference.bytes_per_row(fitted_ae, 64)
    # a quarter of what is free: 64 MiB from the driver + 32 MiB cached by torch, unused
    assert inference.device_budget(gpu) == 24 * 2**20
    assert inference.rows_per_chunk(fitted_ae, 64, device=gpu) == 24 * 2**20 // per_row
    assert asked == [gpu, gpu]
    _gpu(monkeypatch, free=40 * 2**30)      # plenty free: the fixed budget
    assert inference.rows_per_chunk(fitted_ae, 64, device=gpu) == (
        inference.EVAL_MEMORY_BUDGET // per_row)
    asked = _gpu(monkeypatch, free=1)
    assert inference.rows_per_chunk(fitted_ae, 64) == inference.EVAL_MEMORY_BUDGET // per_row
    assert asked == []                      # a model on the CPU never asks the GPU


# ----------------------------------------------------------------- determinism


def test_deterministic_algorithms_sets_and_restores_everything(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    cudnn = torch.backends.cudnn
    before = (torch.are_deterministic_algorithms_enabled(), cudnn.deterministic,
              cudnn.benchmark)
    with deterministic_algorithms():
        assert torch.are_deterministic_algorithms_enabled()
        assert cudnn.deterministic and not cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert (torch.are_deterministic_algorithms_enabled(), cudnn.deterministic,
            cudnn.benchmark) == before
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ


def test_deterministic_algorithms_restores_after_an_error_and_keeps_a_set_config(monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with pytest.raises(ZeroDivisionError), deterministic_algorithms():
            assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"
            assert not torch.is_deterministic_algorithms_warn_only_enabled()
            raise ZeroDivisionError
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(False)


def test_deterministic_algorithms_disabled_changes_nothing(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    with deterministic_algorithms(False):
        assert not torch.are_deterministic_algorithms_enabled()
        assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ


def test_sharded_evaluation_moves_a_model_loaded_on_gpu_0_to_the_ranks_gpu():
    from types import SimpleNamespace

    moved = []

    class OnGpu0(torch.nn.Module):
        def parameters(self, recurse=True):
            yield SimpleNamespace(device=torch.device("cuda", 0))

        def to(self, device):
            moved.append(device)
            return self

    class Model:
        module_ = OnGpu0()

        def transform(self, X):
            return X

    distributed._onto(torch.device("cuda", 1), Model().transform)
    distributed._onto(torch.device("cuda", 0), Model().transform)     # already there
    distributed._onto(torch.device("cpu"), Model().transform)
    distributed._onto(torch.device("cuda", 1), len)                   # not a model's method
    assert moved == [torch.device("cuda", 1)]
