r"""
2. Training is maximum likelihood
=================================

The decoder of an autoencoder does not output a row: it outputs the parameters of a
distribution p(x | z) over rows, and the loss is the negative log-likelihood of the input
under it, -log p(x | z = f(x)). The two classic reconstruction losses are two choices of
that distribution:

* a Gaussian with mean :math:`\mu = g(z)` and a fixed :math:`\sigma` gives

  .. math:: -\log p(x \mid z) = \frac{\lVert x - \mu \rVert^2}{2\sigma^2}
            + \frac{D}{2}\log(2\pi\sigma^2),

  the mean squared error, scaled by :math:`1/(2\sigma^2)`, plus a constant;
* a Bernoulli with probabilities :math:`p = g(z)` for each of the D features gives

  .. math:: -\log p(x \mid z) = -\sum_j \left[x_j \log p_j + (1 - x_j)\log(1 - p_j)\right],

  the binary cross-entropy.

Minimising either over the training rows is maximum-likelihood estimation (Bishop,
"Pattern Recognition and Machine Learning", 2006, sections 1.2.5 and 4.3.2). aekit writes
each likelihood once, as a ``torch.distributions`` object, and every model's loss is its
``log_prob``; ``likelihood=`` chooses it. This chapter checks the two identities on a
fitted model, then shows what the constant and :math:`\sigma` change, and how a badly
chosen :math:`\sigma` makes a VAE learn nothing.
"""

# %%
# The identities, on a fitted autoencoder
# ---------------------------------------
# For a deterministic autoencoder, ``score_samples`` is the decoder log-likelihood at
# the code, log p(x | z = f(x)), and ``reconstruct`` is the decoder's mean. With
# ``likelihood="gaussian"`` (sigma = ``likelihood_scale`` = 1) and ``scale="none"`` (the
# data as they are), the score is minus half the squared error minus the constant.

import os
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

import aekit
from aekit.reporting import plotting

QUICK = bool(os.environ.get("AEKIT_DOCS_QUICK"))  # the site's quick build: few epochs
EPOCHS = 20 if QUICK else 150

X, y = aekit.datasets.load("digits")
X_test, y_test = aekit.datasets.load("digits", split="test")
if QUICK:  # fewer training rows too
    X, y = X[:500], y[:500]
D = X.shape[1]

ae = aekit.AE(n_components=8, likelihood="gaussian", scale="none", max_iter=EPOCHS,
              random_state=0).fit(X)
mu = ae.reconstruct(X_test)
by_hand = -0.5 * ((X_test - mu) ** 2).sum(axis=1) - D / 2 * np.log(2 * np.pi)
print("Gaussian:  score_samples", ae.score_samples(X_test)[:3], " formula", by_hand[:3])

# %%
# The same for the Bernoulli: the score is minus the binary cross-entropy summed over the
# 64 pixels. (On grey levels between 0 and 1 the Bernoulli "likelihood" is not a
# normalised density; the continuous Bernoulli, ``likelihood="continuous_bernoulli"``,
# adds the missing normaliser: Loaiza-Ganem & Cunningham, "The continuous Bernoulli",
# 2019, arXiv:1907.06845.)

ae_b = aekit.AE(n_components=8, likelihood="bernoulli", max_iter=EPOCHS,
                random_state=0).fit(X)
p = np.clip(ae_b.reconstruct(X_test).astype(np.float64), 1e-7, 1 - 1e-7)
bce = -(X_test * np.log(p) + (1 - X_test) * np.log(1 - p)).sum(axis=1)
print("Bernoulli: score_samples", ae_b.score_samples(X_test)[:3], " -BCE", -bce[:3])

# %%
# What the loss looks like for one pixel
# --------------------------------------
# For one pixel whose true value is 0.8, the negative log-likelihood as a function of the
# decoder's output: a parabola for the Gaussian, whose width is sigma and whose floor is
# the constant :math:`\tfrac12\log(2\pi\sigma^2)`; a curve with its minimum at 0.8 for
# the Bernoulli. The constant does not move the minimum, so for a fixed sigma it changes
# no gradient; it matters when sigma is learned, and it is what makes log-likelihoods of
# different models comparable.

out = torch.linspace(0.01, 0.99, 199)
fig, ax = plt.subplots(figsize=(6, 3.5))
for sigma in (0.1, 0.3, 1.0):
    nll = -torch.distributions.Normal(out, sigma).log_prob(torch.tensor(0.8))
    ax.plot(out, nll, label=f"Gaussian, sigma={sigma}")
# torch checks that a Bernoulli's value is 0 or 1; on grey levels the formula is used as is
nll = -torch.distributions.Bernoulli(probs=out, validate_args=False).log_prob(torch.tensor(0.8))
ax.plot(out, nll, "k--", label="Bernoulli (BCE)")
ax.set_ylim(-2, 12)
ax.set_xlabel("decoder output for a pixel of value 0.8")
ax.set_ylabel("-log p(x | z), nats")
ax.legend(fontsize=8)
fig.tight_layout()

# %%
# What sigma does in a VAE
# ------------------------
# A VAE (chapter 5) adds to the reconstruction term a KL divergence that pulls each code
# towards the prior. With a fixed-sigma Gaussian the loss is
# :math:`\lVert x-\mu\rVert^2/(2\sigma^2) + \mathrm{KL}`: sigma is the exchange rate
# between the two. A large sigma makes the squared error cheap, and the cheapest way to
# pay no KL is to ignore x. On raw digits (values in [0, 1], a mean squared error of a
# few hundredths) sigma = 1 is far too large.
#
# We fit the same VAE with ``likelihood="gaussian"``, ``scale="none"`` and four values
# of ``likelihood_scale``, and count the **active units**: code dimensions whose posterior
# mean varies with x (Burda et al., "Importance Weighted Autoencoders", 2015,
# arXiv:1509.00519).

sigmas = [1.0, 0.3, 0.1, 0.03]
rows = []
fig, axes = plt.subplots(len(sigmas), 1, figsize=(8, 1.9 * len(sigmas)))
for sigma, ax in zip(sigmas, axes):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # collapse is the point here
        vae = aekit.VAE(n_components=8, likelihood="gaussian", scale="none",
                        likelihood_scale=sigma, max_iter=EPOCHS, random_state=0).fit(X)
    active = aekit.evaluation.active_units(vae, X_test)
    mse = np.mean((vae.reconstruct(X_test) - X_test) ** 2)
    rows.append((sigma, active, vae.history_["kl"][-1], mse))
    plotting.reconstructions(vae, X_test, n=12, ax=ax, image_shape=(8, 8))
    ax.set_title(f"sigma = {sigma}: {active} active units of 8", fontsize=9)
fig.tight_layout()

print(f"{'sigma':>6} {'active':>6} {'KL (nats)':>10} {'test MSE':>9}")
for sigma, active, kl, mse in rows:
    print(f"{sigma:6.2f} {active:6d} {kl:10.2f} {mse:9.4f}")

# %%
# The collapse, and the default that avoids it
# --------------------------------------------
# With sigma = 1 every unit is inactive: q(z | x) is the prior for every x, the decoder
# outputs the mean digit, and aekit warns with a ``ConvergenceWarning`` saying what to
# change. This is posterior collapse (Bowman et al., "Generating Sentences from a
# Continuous Space", 2015, arXiv:1511.06349), here caused only by the likelihood's scale.
#
# aekit's defaults are ``likelihood="auto"``, which for numeric rows like these is
# ``"gaussian_learned"``, and ``scale="auto"``: each
# feature is standardised by the training rows' mean and standard deviation, and the
# decoder learns one sigma per feature with the networks (Rybkin et al., "Simple and
# Effective VAE Training with Calibrated Decoders", 2021, arXiv:2006.13202). A learned
# sigma settles where the reconstruction is as good as it gets, so the exchange rate is
# right on data of any scale, and the outputs and ``score_samples`` are still in the
# data's own units. The KL per code dimension shows the difference.

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", ConvergenceWarning)
    collapsed = aekit.VAE(n_components=8, likelihood="gaussian", scale="none",
                          max_iter=EPOCHS, random_state=0).fit(X)
for w in caught:
    if issubclass(w.category, ConvergenceWarning):
        print("warning:", w.message)
default = aekit.VAE(n_components=8, max_iter=EPOCHS, random_state=0).fit(X)

fig, axes = plt.subplots(2, 2, figsize=(10, 6))
for col, (name, model) in enumerate([("gaussian, scale='none'", collapsed),
                                     ("default: gaussian_learned, scale='auto'", default)]):
    plotting.kl_per_dimension(model, X_test, ax=axes[0, col])
    axes[0, col].set_title(name, fontsize=9)
    plotting.samples(model, n=24, random_state=0, ax=axes[1, col], image_shape=(8, 8))
    axes[1, col].set_title("samples", fontsize=9)
fig.tight_layout()

for name, model in [("collapsed", collapsed), ("default", default)]:
    print(f"{name:>9}: {aekit.evaluation.active_units(model, X_test)} active units, "
          f"test log p(x) {model.score(X_test):.1f} nats")

# %%
# Which numbers compare
# ---------------------
# ``score_samples`` is a log-likelihood in nats, so two models' scores compare when they
# are densities of the same data with respect to the same measure: both Gaussians above
# are densities over the real line of the 64 grey values, and the larger mean test
# log-likelihood is the better density model. A Bernoulli's score is a log-probability of
# binary outcomes, on another scale; on grey levels it is not even normalised. Continuous
# densities of 8-bit data need dequantisation before they are code lengths:
# :func:`aekit.evaluation.bits_per_dim` says when bits per dimension mean something
# (Theis et al., "A note on the evaluation of generative models", 2015,
# arXiv:1511.01844).
