"""
1. Four keywords, one model
===========================

An autoencoder is an encoder f that maps a row x to a short code z = f(x) and a decoder g
that maps the code back, trained so that g(f(x)) is close to x. Four keywords describe
what one trained autoencoder is:

* **unsupervised learning**: it is trained on x alone, without labels;
* **manifold learning**: the encoder is a nonlinear dimensionality reduction, the
  generalisation of PCA (Hinton & Salakhutdinov, "Reducing the Dimensionality of Data
  with Neural Networks", Science 2006);
* **generative modelling**: the decoder turns codes into new rows;
* **maximum-likelihood density estimation**: the loss is a negative log-likelihood, so
  the trained model assigns a density to every row.

aekit gives each keyword one scikit-learn method: ``fit``, ``transform``, ``sample`` (and
``inverse_transform``) and ``score_samples``. This chapter trains one variational
autoencoder (chapter 5 explains what "variational" adds) and puts each method next to
what PCA gives for the same question.
"""

# %%
# The data: scikit-learn's digits
# -------------------------------
# ``aekit.datasets.load`` returns the rows as float32 in [0, 1] (the 17 grey levels of
# the 8 x 8 images divided by 16) and the labels, which no model below is trained on.
# "digits" has a fixed stratified split: 1,437 training and 360 test images.

import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.decomposition import PCA

import aekit
from aekit.reporting import plotting

QUICK = bool(os.environ.get("AEKIT_DOCS_QUICK"))  # the site's quick build: few epochs
EPOCHS = 30 if QUICK else 200

X, y = aekit.datasets.load("digits")
X_test, y_test = aekit.datasets.load("digits", split="test")
if QUICK:  # fewer training rows too
    X, y = X[:500], y[:500]
print(X.shape, X_test.shape, X.min(), X.max())

# %%
# ``fit``: unsupervised learning
# ------------------------------
# Grey levels in [0, 1] are modelled here with a Bernoulli likelihood per pixel, whose
# negative log-likelihood is the binary cross-entropy (chapter 2). Two code dimensions
# make the code something we can look at. ``fit`` gets ``X`` and nothing else.

vae = aekit.VAE(n_components=2, likelihood="bernoulli", max_iter=EPOCHS, random_state=0)
vae.fit(X)
pca = PCA(n_components=2).fit(X)

fig, ax = plt.subplots(figsize=(5, 3))
plotting.training_curves(vae, ax=ax)
fig.tight_layout()

# %%
# ``transform``: manifold learning
# --------------------------------
# ``transform`` gives each row's code: for a VAE, the mean of q(z | x). PCA's code is the
# projection on the two directions of largest variance. The labels only colour the
# points; neither method saw them. A curved map can keep apart classes a linear
# projection overlaps.

fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
plotting.latent_scatter(vae, X_test, y_test, ax=axes[0])
axes[0].set_title("VAE codes (test digits)")
Z_pca = pca.transform(X_test)
points = axes[1].scatter(Z_pca[:, 0], Z_pca[:, 1], c=y_test, cmap="tab10", s=8)
axes[1].set_title("PCA codes (test digits)")
axes[1].legend(*points.legend_elements(), fontsize=7, loc="best")
fig.tight_layout()

# %%
# How well does a code of two numbers keep a digit's identity? One measure that needs no
# training on labels is the accuracy of a 1-nearest-neighbour classifier in code space.

knn = aekit.evaluation.knn_accuracy
acc_vae = knn(vae.transform(X), y, vae.transform(X_test), y_test)
acc_pca = knn(pca.transform(X), y, Z_pca, y_test)
print(f"1-NN accuracy of the 2-D codes: VAE {acc_vae:.3f}, PCA {acc_pca:.3f}")

# %%
# ``inverse_transform`` and ``reconstruct``: back to the data
# -----------------------------------------------------------
# ``inverse_transform(Z)`` decodes codes (for a VAE, the mean of p(x | z)) and
# ``reconstruct(X)`` is ``inverse_transform(transform(X))``. Top row: test digits; bottom
# row: their reconstructions through two numbers.

fig, axes = plt.subplots(2, 1, figsize=(8, 4))
plotting.reconstructions(vae, X_test, n=10, ax=axes[0], image_shape=(8, 8))
axes[0].set_title("VAE: test digits (top) and reconstructions (bottom)")
mse_vae = np.mean((vae.reconstruct(X_test) - X_test) ** 2)
mse_pca = np.mean((pca.inverse_transform(Z_pca) - X_test) ** 2)
side = np.concatenate([X_test[:10], pca.inverse_transform(Z_pca[:10])]).reshape(2, 10, 8, 8)
axes[1].imshow(side.transpose(0, 2, 1, 3).reshape(16, 80), cmap="gray_r", vmin=0, vmax=1)
axes[1].set_axis_off()
axes[1].set_title("PCA with 2 components")
fig.tight_layout()
print(f"test reconstruction MSE: VAE {mse_vae:.4f}, PCA {mse_pca:.4f}")

# %%
# ``sample``: generative modelling
# --------------------------------
# ``sample(n)`` draws codes from the prior p(z) = N(0, I) and returns the decoder's means.
# The manifold grid decodes a regular grid of codes through the prior's quantiles
# (Kingma & Welling, "Auto-Encoding Variational Bayes", 2013, arXiv:1312.6114): the
# decoder's picture of the whole code space.

fig, axes = plt.subplots(1, 2, figsize=(10, 5))
plotting.samples(vae, n=36, random_state=0, ax=axes[0], image_shape=(8, 8))
axes[0].set_title("sample(36)")
plotting.manifold_grid(vae, n=12, ax=axes[1], image_shape=(8, 8))
axes[1].set_title("decoded grid of codes")
fig.tight_layout()

# %%
# ``score_samples``: density estimation
# -------------------------------------
# ``score_samples`` is log p(x) of each row in nats, estimated by importance sampling
# (``n_importance_samples`` draws from q(z | x); Burda et al., "Importance Weighted
# Autoencoders", 2015, arXiv:1509.00519). The least likely test digits are the
# unusual ones: a density is an anomaly detector (chapter 8).

log_p = vae.score_samples(X_test)
order = np.argsort(log_p)
print(f"mean test log p(x): {log_p.mean():.2f} nats ({vae.score(X_test):.2f} from score)")

fig, axes = plt.subplots(1, 2, figsize=(10, 3), gridspec_kw={"width_ratios": [1, 1.4]})
axes[0].hist(log_p, bins=30, color="tab:blue")
axes[0].set_xlabel("log p(x), nats")
axes[0].set_ylabel("test digits")
ends = np.concatenate([X_test[order[:6]], X_test[order[-6:]]]).reshape(2, 6, 8, 8)
axes[1].imshow(ends.transpose(0, 2, 1, 3).reshape(16, 48), cmap="gray_r", vmin=0, vmax=1)
axes[1].set_axis_off()
axes[1].set_title("least likely (top) and most likely (bottom) test digits")
fig.tight_layout()

# %%
# PCA is a density too: probabilistic PCA (Tipping & Bishop, "Probabilistic Principal
# Component Analysis", 1999) is a Gaussian in the 64-dimensional space, and scikit-learn's
# ``PCA.score_samples`` returns its log-density. That number is a density with respect to
# volume on the real line, the Bernoulli's a probability of 0/1 outcomes: the two are not
# on one scale. Chapter 2 is about what the likelihood means and which numbers compare.
#
# The same model, by name, from the command line: ``aekit fit vae --data digits
# --set likelihood=bernoulli -o vae.safetensors``, then ``aekit score vae.safetensors
# --data digits --split test``.
