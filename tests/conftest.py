import os

import numpy as np
import pytest
import torch

import aekit

# The test models are tiny: one thread is faster for them, and it keeps the suite steady
# when other work shares the machine's two cores.
torch.set_num_threads(1)

#: small networks and few epochs: the tests check behaviour, not quality.
SMALL = dict(hidden_layer_sizes=(32,), max_iter=5, batch_size=64, random_state=0)


#: whether this machine has a usable GPU, asked before the suite hides it (the driver reads
#: CUDA_VISIBLE_DEVICES once, at this first call)
CUDA = torch.cuda.is_available()
_VISIBLE = os.environ.get("CUDA_VISIBLE_DEVICES")
_IS_AVAILABLE = torch.cuda.is_available


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: runs on a CUDA GPU (tests/test_cuda.py); every "
                            "other test runs as on a machine without one")


@pytest.fixture(scope="session", autouse=True)
def _a_machine_without_cuda():
    """The suite runs on the CPU even on a GPU machine: ``device="auto"`` would otherwise
    put every model on CUDA, where tests that hand fitted models CPU tensors or
    generators fail. The tests see a machine without CUDA, in this process
    (``torch.cuda.is_available()``, so "auto" is the CPU) and in the processes they start
    (CLI, torchrun: ``CUDA_VISIBLE_DEVICES`` empty); session-wide, so that session
    fixtures (``fitted_vae``) are fitted on the CPU too. Tests marked ``cuda`` see the GPU."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.cuda, "is_available", lambda: False)
        mp.setenv("CUDA_VISIBLE_DEVICES", "")
        yield


@pytest.fixture(autouse=True)
def _the_gpu_for_cuda_tests(request, monkeypatch):
    if request.node.get_closest_marker("cuda") is not None:
        monkeypatch.setattr(torch.cuda, "is_available", _IS_AVAILABLE)
        if _VISIBLE is None:
            monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        else:
            monkeypatch.setenv("CUDA_VISIBLE_DEVICES", _VISIBLE)


def weights(model):
    """A copy of a fitted model's tensors, by name."""
    return {k: v.clone() for k, v in model.module_.state_dict().items()}


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def history_without_time(model):
    """``history_`` without the wall-clock column, which differs between runs."""
    return {k: v for k, v in model.history_.items() if k != "time"}


@pytest.fixture(scope="session")
def digits():
    X, y = aekit.datasets.load("digits", split="train")
    return X, y


@pytest.fixture(scope="session")
def digits_test():
    return aekit.datasets.load("digits", split="test")


@pytest.fixture(scope="session")
def fitted_vae(digits):
    X, _ = digits
    return aekit.VAE(likelihood="bernoulli", n_components=2, n_importance_samples=16,
                     **{**SMALL, "max_iter": 20}).fit(X)


@pytest.fixture(scope="session")
def fitted_ae(digits):
    X, _ = digits
    return aekit.AE(likelihood="bernoulli", n_components=2, **{**SMALL, "max_iter": 20}).fit(X)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


#: tests that feed the library bad input; their count is printed after every run and
#: recorded in RELIABILITY.md.
BAD_INPUT_TESTS = ("test_bad_input.py::test_fit_refuses",
                   "test_bad_input.py::test_fitted_model_refuses",
                   "test_bad_input.py::test_score_samples_refuses",
                   "test_cli.py::test_user_errors", "test_io.py::test_tampered",
                   "test_io.py::test_a_pickle_payload", "test_io.py::test_metadata_naming",
                   "test_io.py::test_missing", "test_io.py::test_a_plain_safetensors",
                   "test_training.py::test_a_checkpoint_",
                   "test_training.py::test_a_corrupt_checkpoint",
                   "test_training.py::test_a_fresh_fit_over",
                   "test_training.py::test_a_network_too_large",
                   "test_reliability.py::", "test_core_defects.py::test_bits_per_dim_refuses")


def pytest_terminal_summary(terminalreporter):
    passed = terminalreporter.stats.get("passed", [])
    tried = [r for r in passed + terminalreporter.stats.get("failed", [])
             if any(key in r.nodeid for key in BAD_INPUT_TESTS)]
    if tried:
        ok = sum(1 for r in passed if any(key in r.nodeid for key in BAD_INPUT_TESTS))
        terminalreporter.write_line(f"bad-input cases tried: {len(tried)}, refused as "
                                    f"expected: {ok}")
