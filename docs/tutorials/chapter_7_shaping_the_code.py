r"""
7. Shaping the code: AAE, WAE, VQ-VAE and the VampPrior
=======================================================

A VAE asks every row's posterior q(z | x) to stay close to the prior, through a KL term
per row. Four models change *how* the codes are matched to a prior, or *which* prior:

* the **adversarial autoencoder** (Makhzani et al., 2015, arXiv:1511.05644) is a
  deterministic autoencoder whose aggregate of codes is pushed towards any prior one can
  sample from, by a discriminator on codes, as in a GAN;
* the **Wasserstein autoencoder** (Tolstikhin et al., 2017, arXiv:1711.01558) does the
  same with a maximum mean discrepancy between a minibatch of codes and prior draws;
* the **VQ-VAE** (van den Oord et al., 2017, arXiv:1711.00937) makes the code discrete:
  the nearest vector of a learned codebook, with a categorical prior over its entries;
* the **VampPrior** (Tomczak & Welling, 2017, arXiv:1705.07120) keeps the VAE and learns
  its prior, a mixture of the encoder's posteriors at learned pseudo-inputs.

Matching the aggregate (AAE, WAE) rather than each row's posterior leaves rows free to
have distinct codes; the price is that there is no bound on log p(x), so these two have
no density (``capabilities.score_is_density`` is False). The VQ-VAE and the VampPrior VAE
do have one.
"""

# %%
# Codes matched to a prior
# ------------------------
# Two-dimensional codes of the test digits from a VAE, an AAE with the standard normal
# prior, an AAE with a mixture of ten Gaussians (``prior="mixture"``), a WAE and a
# VampPrior VAE. The prior shapes where the codes go; the labels only colour them.

import os

import matplotlib.pyplot as plt
import numpy as np

import aekit
from aekit.reporting import plotting

QUICK = bool(os.environ.get("AEKIT_DOCS_QUICK"))  # the site's quick build: few epochs
EPOCHS = 20 if QUICK else 200

X, y = aekit.datasets.load("digits")
X_test, y_test = aekit.datasets.load("digits", split="test")
if QUICK:  # fewer training rows too
    X, y = X[:500], y[:500]

common = dict(n_components=2, likelihood="bernoulli", max_iter=EPOCHS, random_state=0)
models = {
    "VAE": aekit.VAE(**common),
    "AAE, normal prior": aekit.AAE(prior="normal", **common),
    "AAE, mixture prior": aekit.AAE(prior="mixture", **common),
    "WAE-MMD": aekit.WAE(**common),
    "VampPrior VAE": aekit.VampPriorVAE(n_pseudo_inputs=50, **common),
}
fig, axes = plt.subplots(1, len(models), figsize=(3.2 * len(models), 3.4))
for ax, (name, model) in zip(axes, models.items()):
    model.fit(X)
    plotting.latent_scatter(model, X_test, y_test, ax=ax)
    ax.set_title(name, fontsize=9)
    if ax is not axes[-1] and ax.get_legend() is not None:
        ax.get_legend().remove()
fig.tight_layout()

# %%
# Samples: ``sample`` decodes draws from each model's prior. Where the codes fill the
# prior, the draws land on codes the decoder was trained on.

fig, axes = plt.subplots(1, len(models), figsize=(3.2 * len(models), 3.4))
for ax, (name, model) in zip(axes, models.items()):
    plotting.samples(model, n=25, random_state=0, ax=ax, image_shape=(8, 8))
    ax.set_title(name, fontsize=9)
fig.tight_layout()

# %%
# Which of them are densities
# ---------------------------
# ``capabilities`` declares what a model can do; ``score_is_density`` says whether
# ``score_samples`` is log p(x); for the others it is the decoder's log-likelihood at
# the code, log p(x | z = f(x)), which ignores how the codes spread.

for name, model in models.items():
    density = model.capabilities.score_is_density
    score = f"{model.score(X_test):8.2f} nats" if density else "  (not a density)"
    print(f"{name:>20}: score_is_density={density!s:5}  mean test score {score}")

# %%
# The VQ-VAE: a discrete code with an exact likelihood
# ----------------------------------------------------
# Each row's code is one of ``codebook_size`` learned vectors. With a categorical prior
# :math:`\pi` fitted to how often each entry is used, the model is a finite mixture, and
# ``score_samples`` is exact: :math:`\log p(x) = \log \sum_c \pi_c\, p(x \mid e_c)`,
# computed by decoding every entry. ``predict_codes`` gives each row's entry; the decoded
# codebook is the model's whole repertoire.

vq = aekit.VQVAE(n_components=8, codebook_size=32, likelihood="bernoulli",
                 max_iter=EPOCHS, random_state=0).fit(X)
codes = vq.predict_codes(X_test)
used = np.bincount(codes, minlength=32)
print(f"VQ-VAE: {np.count_nonzero(used)} of 32 codebook entries used by the test digits; "
      f"exact mean test log p(x) {vq.score(X_test):.2f} nats, "
      f"ELBO {vq.elbo(X_test).mean():.2f}")

order = np.argsort(used)[::-1]
fig, axes = plt.subplots(2, 1, figsize=(9, 4.2))
axes[0].bar(np.arange(32), used[order])
axes[0].set_ylabel("test digits")
axes[0].set_xlabel("codebook entry, most used first")
# each entry's vector e_c, decoded: the code of a test digit that uses it is e_c itself
examples = [np.flatnonzero(codes == c)[0] for c in order if used[c]]
decoded = vq.inverse_transform(vq.transform(X_test[examples]))
tiles = np.zeros((32, 8, 8))
tiles[:len(decoded)] = decoded.reshape(-1, 8, 8)
axes[1].imshow(tiles.reshape(2, 16, 8, 8).transpose(0, 2, 1, 3).reshape(16, 128),
               cmap="gray_r", vmin=0, vmax=1)
axes[1].set_axis_off()
axes[1].set_title("what each entry decodes to, in the same order (two rows of 16)",
                  fontsize=9)
fig.tight_layout()

# %%
# The ELBO of a VQ-VAE is the likelihood of the nearest entry alone; the exact
# log-likelihood sums over all entries, and never falls below it. Chapter 5's importance
# sampling is not needed: the sum has only ``codebook_size`` terms.
