r"""
5. The variational autoencoder
==============================

A plain autoencoder's decoder is trained only at the codes of the training rows; nothing
says what it does elsewhere, so it has no density of x and no principled way to sample.
The variational autoencoder (Kingma & Welling, "Auto-Encoding Variational Bayes", 2013,
arXiv:1312.6114; Rezende, Mohamed & Wierstra, 2014, arXiv:1401.4082) makes the code a
latent variable: a prior :math:`p(z) = \mathcal N(0, I)`, a decoder :math:`p(x \mid z)`,
and the density :math:`p(x) = \int p(x \mid z)\,p(z)\,dz`. The integral is intractable,
so an encoder :math:`q(z \mid x)` (a diagonal Gaussian) approximates the posterior and
training maximises the **evidence lower bound**

.. math:: \log p(x) \;\ge\; \mathrm{ELBO}(x) =
          \mathbb E_{q(z \mid x)}[\log p(x \mid z)] - \mathrm{KL}(q(z \mid x)\,\|\,p(z)),

a reconstruction term (chapter 2's likelihood) and a KL term that keeps the codes where
the prior puts them. The gap is :math:`\mathrm{KL}(q(z\mid x)\,\|\,p(z\mid x))`.
This chapter measures the bound, the likelihood behind it, the KL per code dimension, and
what to do when the KL term wins.
"""

# %%
# The bound and the likelihood
# ----------------------------
# ``elbo(X)`` is the bound per row; ``score_samples(X)`` is log p(x) estimated by
# importance sampling with K draws from q (Burda, Grosse & Salakhutdinov, "Importance
# Weighted Autoencoders", 2015, arXiv:1509.00519):
# :math:`\log \frac1K \sum_k p(x, z_k)/q(z_k \mid x)`, a bound that rises towards
# log p(x) as K grows (K = 1 is the ELBO). ``n_importance_samples`` sets K.

import os
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.exceptions import ConvergenceWarning

import aekit
from aekit.reporting import plotting

QUICK = bool(os.environ.get("AEKIT_DOCS_QUICK"))  # the site's quick build: few epochs
EPOCHS = 20 if QUICK else 200

X, y = aekit.datasets.load("digits")
X_test, y_test = aekit.datasets.load("digits", split="test")
if QUICK:  # fewer training rows too
    X, y = X[:500], y[:500]

vae = aekit.VAE(n_components=16, likelihood="bernoulli", max_iter=EPOCHS,
                random_state=0).fit(X)
print(f"test ELBO {vae.elbo(X_test).mean():.2f} nats, "
      f"log p(x) (K={vae.n_importance_samples}) {vae.score(X_test):.2f} nats")

ks = [1, 10, 100] if QUICK else [1, 10, 100, 1000]
means = [aekit.evaluation.importance_sampled_log_likelihood(vae, X_test, k)[0].mean()
         for k in ks]
fig, ax = plt.subplots(figsize=(5, 3.2))
ax.semilogx(ks, means, "o-")
ax.set_xlabel("K, importance samples per row")
ax.set_ylabel("mean test log p(x) bound, nats")
ax.set_title("K = 1 is the ELBO; the bound tightens with K", fontsize=9)
fig.tight_layout()

# %%
# The KL per code dimension
# -------------------------
# The KL term is a sum over code dimensions, one divergence each (with a diagonal
# posterior and a factorised prior), and the terms say which dimensions the model uses.
# A dimension whose KL is near zero has q(z_j | x) = p(z_j) for every x: it carries no
# information and is **inactive** (Burda et al. count a unit active when the variance
# over x of its posterior mean exceeds 0.01). A VAE given 16 dimensions for digits uses a
# handful and switches the rest off; that is the KL term doing its job, not a failure.

fig, ax = plt.subplots(figsize=(7, 3))
plotting.kl_per_dimension(vae, X_test, ax=ax)
fig.tight_layout()
kl = aekit.evaluation.kl_per_dimension(vae, X_test)
print("KL per dimension (nats):", np.round(kl, 2))
print("active units:", aekit.evaluation.active_units(vae, X_test), "of 16")

# %%
# When every unit is off: posterior collapse and its remedies
# -----------------------------------------------------------
# When the decoder can model x without z, or the reconstruction term is weak (chapter 2),
# the optimum of the ELBO can be q(z | x) = p(z) for all x, and the code is empty:
# posterior collapse (Bowman et al., 2015, arXiv:1511.06349). The usual remedies, all
# parameters of :class:`aekit.BetaVAE` and :class:`aekit.IWAE`:
#
# * a **KL warm-up**: the KL weight rises from 0 to 1 over the first epochs, so the
#   decoder learns to use z before the KL term pulls it back (Bowman et al.; Sønderby et
#   al., "Ladder Variational Autoencoders", 2016, arXiv:1602.02282);
# * **free bits**: the first nats of each dimension's KL cost nothing (Kingma et al.,
#   "Improved Variational Inference with Inverse Autoregressive Flow", 2016,
#   arXiv:1606.04934);
# * a **tighter bound**: IWAE trains on the K-sample bound, which keeps more units
#   active (Burda et al.);
# * and the other way, **beta > 1** (Higgins et al., "beta-VAE", ICLR 2017) weighs the KL
#   more for a more factorised code, and switches off more units.
#
# The same data and networks with each remedy:

warmup = max(2, EPOCHS // 4)
models = {
    "VAE": vae,
    "KL warm-up": aekit.BetaVAE(n_components=16, likelihood="bernoulli", beta=1.0,
                                kl_schedule="linear", warmup_epochs=warmup,
                                max_iter=EPOCHS, random_state=0).fit(X),
    "free bits 0.5": aekit.BetaVAE(n_components=16, likelihood="bernoulli", beta=1.0,
                                   free_bits=0.5, max_iter=EPOCHS, random_state=0).fit(X),
    "IWAE (K=5)": aekit.IWAE(n_components=16, likelihood="bernoulli", n_train_samples=5,
                             max_iter=EPOCHS, random_state=0).fit(X),
}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", ConvergenceWarning)
    models["beta = 4"] = aekit.BetaVAE(n_components=16, likelihood="bernoulli", beta=4.0,
                                       max_iter=EPOCHS, random_state=0).fit(X)
for w in caught:
    if issubclass(w.category, ConvergenceWarning):
        print("beta = 4:", w.message)
fig, axes = plt.subplots(1, len(models), figsize=(14, 2.8), sharey=True)
print(f"{'model':>14} {'active':>6} {'ELBO':>8} {'log p(x)':>9}")
for ax, (name, model) in zip(axes, models.items()):
    ax.bar(np.arange(16), aekit.evaluation.kl_per_dimension(model, X_test))
    ax.set_title(name, fontsize=9)
    ax.set_xlabel("dimension")
    print(f"{name:>14} {aekit.evaluation.active_units(model, X_test):6d} "
          f"{model.elbo(X_test).mean():8.2f} {model.score(X_test):9.2f}")
axes[0].set_ylabel("KL, nats")
fig.tight_layout()

# %%
# All of these are scored by the same importance-sampled log-likelihood, so the last
# column compares them as density models of the test digits. On digits with a Bernoulli
# decoder, beta = 4 is too much: the KL term wins outright and every unit is switched
# off, which is the collapse the other remedies prevent. ``history_["active_units"]`` and
# ``history_["kl_per_dim"]`` record the code epoch by epoch, and a model that ends with
# every unit inactive warns with a ``ConvergenceWarning`` that says which of these levers
# to pull.

fig, ax = plt.subplots(figsize=(6, 3))
for name in ["VAE", "KL warm-up", "beta = 4"]:
    ax.plot(models[name].history_["active_units"], label=name)
ax.set_xlabel("epoch")
ax.set_ylabel("active units")
ax.legend(fontsize=8)
fig.tight_layout()

# %%
# A walk through the code
# -----------------------
# Because the prior fills the code space, the decoder is trained everywhere the prior
# puts mass, and straight lines between two codes decode to plausible digits.

fig, ax = plt.subplots(figsize=(8, 1.6))
plotting.interpolation(vae, X_test[0], X_test[1], n=10, ax=ax, image_shape=(8, 8))
fig.tight_layout()

# %%
# Two stochastic layers
# ---------------------
# One Gaussian layer under an N(0, I) prior limits what the model can say about the
# code. A hierarchical VAE stacks two: an upper code z2 with the N(0, I) prior, and a lower
# code z1 whose prior p(z1 | z2) is a Gaussian computed from z2 by a network, so the prior
# of z1 is learned (Burda et al. 2015; Tomczak & Welling, "VAE with a VampPrior", 2017,
# arXiv:1705.07120). The decoder sees both codes; the encoder infers z2 from x, then z1
# from x and z2. :class:`aekit.HierarchicalVAE` gives the code ``[z1, z2]``, samples
# z1 from p(z1 | z2), and importance-samples both layers in ``score_samples``.
# ``history_`` keeps the two KL terms apart, which shows whether the lower layer is used.

hvae = aekit.HierarchicalVAE(n_components=16, likelihood="bernoulli", max_iter=EPOCHS,
                             random_state=0).fit(X)
print(f"one layer:  log p(x) {vae.score(X_test):.2f} nats")
print(f"two layers: log p(x) {hvae.score(X_test):.2f} nats; last epoch's KL: "
      f"z2 {hvae.history_['kl_top'][-1]:.1f}, z1 given z2 {hvae.history_['kl_bottom'][-1]:.1f}")
fig, ax = plt.subplots(figsize=(8, 1.6))
ax.imshow(np.hstack(hvae.sample(10, random_state=0).reshape(10, 8, 8)), cmap="gray_r")
ax.set_axis_off()
ax.set_title("draws of z2, then z1 | z2, decoded", fontsize=9)
fig.tight_layout()
