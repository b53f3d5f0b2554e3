r"""
4. Regularised autoencoders side by side
========================================

An autoencoder whose code is as wide as its input can learn the identity and nothing
else. The classic answer is a narrow code (the **undercomplete** autoencoder of chapter
1); the others keep the code wide enough and add a requirement that only structure in the
data can meet:

* **denoising** (Vincent et al., ICML 2008): reconstruct the clean row from a corrupted
  copy, :math:`-\log p(x \mid z = f(\tilde x))`, so the code must capture what survives
  the noise;
* **contractive** (Rifai et al., ICML 2011): add :math:`\lambda \lVert J_f(x) \rVert_F^2`,
  the squared Frobenius norm of the encoder's Jacobian, so the code is insensitive to
  directions the data do not move along;
* **sparse** (Ng, CS294A notes, 2011): push the mean activation of each code unit
  towards a small target with a KL penalty, so each row uses few units;
* **stacked** (Bengio et al., NeurIPS 2006; Hinton & Salakhutdinov, Science 2006): train
  each layer as a one-layer autoencoder on the codes of the layer below, then fine-tune
  the deep network end to end.

The penalties are regularisers, not log-probabilities: the loss is the likelihood of
chapter 2 plus a penalty, and ``history_["recon"]`` keeps the likelihood part. Here all
five train on digits with the same networks, a Bernoulli likelihood and a 16-unit code.
"""

# %%
# Five models, one API
# --------------------

import os

import matplotlib.pyplot as plt
import numpy as np

import aekit
from aekit.reporting import plotting

QUICK = bool(os.environ.get("AEKIT_DOCS_QUICK"))  # the site's quick build: few epochs
EPOCHS = 20 if QUICK else 150

X, y = aekit.datasets.load("digits")
X_test, y_test = aekit.datasets.load("digits", split="test")
if QUICK:  # fewer training rows too
    X, y = X[:500], y[:500]

common = dict(n_components=16, likelihood="bernoulli", max_iter=EPOCHS, random_state=0)
models = {
    "AE": aekit.AE(**common),
    "denoising": aekit.DenoisingAE(noise="masking", noise_level=0.3, **common),
    "contractive": aekit.ContractiveAE(contractive_weight=0.1, **common),
    "sparse": aekit.SparseAE(sparsity="kl", sparsity_target=0.05, sparsity_weight=0.1,
                             **common),
    "stacked": aekit.StackedAE(pretrain_max_iter=5 if QUICK else 30, **common),
}
for model in models.values():
    model.fit(X)

# %%
# What each requirement changes
# -----------------------------
# Four measurements on the test digits, one per idea:
#
# * **clean MSE**: squared error of ``reconstruct`` on the test digits;
# * **masked MSE**: the same when each pixel is set to 0 with probability 0.3 at the input,
#   against the clean digit, the denoising task (``DenoisingAE.corrupt`` makes the
#   corrupted copies, seeded);
# * **sensitivity**: :math:`\mathbb E \lVert f(x + \delta) - f(x)\rVert^2 / s^2` with
#   :math:`\delta \sim \mathcal N(0, s^2 I)`, a finite-difference estimate of
#   :math:`\lVert J_f(x)\rVert_F^2` that needs only ``transform``, divided by the code's
#   total variance so that codes of different scales compare;
# * **linear probe**: accuracy of a logistic regression on the 16-number codes, a common
#   measure of how usable a representation is (the labels are used only here).

masked = models["denoising"].corrupt(X_test, random_state=0)
rng = np.random.default_rng(0)
s = 0.01
print(f"{'model':>12} {'clean MSE':>9} {'masked MSE':>10} {'sensitivity':>11} "
      f"{'linear probe':>12}")
rows = {}
for name, model in models.items():
    Z = model.transform(X_test)
    delta = rng.normal(0, s, size=X_test.shape).astype(np.float32)
    jac = np.mean(np.sum((model.transform(X_test + delta) - Z) ** 2, 1)) / s**2
    rows[name] = (np.mean((model.reconstruct(X_test) - X_test) ** 2),
                  np.mean((model.reconstruct(masked) - X_test) ** 2),
                  jac / Z.var(0).sum(),
                  aekit.evaluation.linear_probe_accuracy(model.transform(X), y, Z, y_test))
    print(f"{name:>12} {rows[name][0]:9.4f} {rows[name][1]:10.4f} {rows[name][2]:11.2f} "
          f"{rows[name][3]:12.3f}")

# %%
# What to look for (after the full build's epochs): the denoising model is the one that
# repairs masked digits, at some cost in clean reconstruction; the contractive model has
# the least sensitive code; and the codes of all five are about equally good inputs for
# a linear classifier, since each is a 16-number summary of the same digits.
#
# The denoising autoencoder on masked digits: corrupted inputs (top), its
# reconstructions (middle), the clean digits (bottom).: corrupted inputs (top), its
# reconstructions (middle), the clean digits (bottom).

fig, ax = plt.subplots(figsize=(7, 3))
plotting.denoising(models["denoising"], X_test, n=10, ax=ax, image_shape=(8, 8))
fig.tight_layout()

# %%
# The sparse code
# ---------------
# With ``sparsity="kl"`` the code is a sigmoid, in (0, 1), and the penalty pulls each
# unit's mean activation towards ``sparsity_target``: each digit switches on a few units
# and leaves the others near zero.

Z_sparse = models["sparse"].transform(X_test)
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
axes[0].imshow(Z_sparse[:40].T, aspect="auto", cmap="viridis", vmin=0, vmax=1)
axes[0].set_xlabel("test digit")
axes[0].set_ylabel("code unit")
axes[0].set_title("sparse AE: codes of 40 digits", fontsize=9)
axes[1].bar(np.arange(16), Z_sparse.mean(0))
axes[1].axhline(0.05, color="k", ls="--", lw=1, label="sparsity_target")
axes[1].set_xlabel("code unit")
axes[1].set_ylabel("mean activation")
axes[1].legend(fontsize=8)
fig.tight_layout()

# %%
# Layer-wise pretraining
# ----------------------
# ``StackedAE`` records each layer's pretraining losses in ``history_`` next to the
# fine-tuning curve (``hidden_layer_sizes=(256, 128)`` and a 16-unit code: three layers).
# Pretraining mattered when deep networks were hard to train from a random start (the
# papers above); with today's initialisations and optimisers a deep autoencoder also
# trains from scratch, and pretraining is one more way to start it.

stacked = models["stacked"]
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
for key in sorted(k for k in stacked.history_ if k.startswith("pretrain_")):
    axes[0].plot(stacked.history_[key], label=key.removeprefix("pretrain_"))
axes[0].set_xlabel("epoch")
axes[0].set_ylabel("loss (nats)")
axes[0].set_title("greedy pretraining, one layer at a time", fontsize=9)
axes[0].legend(fontsize=8)
plotting.training_curves(stacked, ax=axes[1])
axes[1].set_title("fine-tuning", fontsize=9)
fig.tight_layout()

# %%
# All five are deterministic codes: ``score_samples`` is the decoder's log-likelihood at
# the code, not a density of x (``model.capabilities.score_is_density`` is False). For a
# density, the code has to become a random variable: chapter 5.
