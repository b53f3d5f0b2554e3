import numpy as np
import pytest
import torch

import aekit

# The test models are tiny: one thread is faster for them, and it keeps the suite steady
# when other work shares the machine's two cores.
torch.set_num_threads(1)

#: small networks and few epochs: the tests check behaviour, not quality.
SMALL = dict(hidden_layer_sizes=(32,), max_iter=5, batch_size=64, random_state=0)


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
