import numpy as np
import pytest
import torch

import aekit

# The test models are tiny: one thread is faster for them, and it keeps the suite steady
# when other work shares the machine's two cores.
torch.set_num_threads(1)

#: small networks and few epochs: the tests check behaviour, not quality.
SMALL = dict(hidden_layer_sizes=(32,), max_iter=5, batch_size=64, random_state=0)


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
                   "test_training.py::test_a_corrupt_checkpoint")


def pytest_terminal_summary(terminalreporter):
    passed = terminalreporter.stats.get("passed", [])
    tried = [r for r in passed + terminalreporter.stats.get("failed", [])
             if any(key in r.nodeid for key in BAD_INPUT_TESTS)]
    if tried:
        ok = sum(1 for r in passed if any(key in r.nodeid for key in BAD_INPUT_TESTS))
        terminalreporter.write_line(f"bad-input cases tried: {len(tried)}, refused as "
                                    f"expected: {ok}")
