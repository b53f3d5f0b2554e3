r"""
3. Manifold learning: the nonlinear generalisation of PCA
=========================================================

Images of handwritten digits fill a tiny part of the 64-dimensional pixel space: the
**manifold hypothesis** says that such data lie near a set of much lower dimension, and
an autoencoder's encoder is a coordinate system on it. The bridge to PCA is exact: an
autoencoder with linear encoder and decoder trained with squared error learns the
subspace spanned by the leading principal components (Baldi & Hornik, "Neural networks
and principal component analysis: learning from examples without local minima", Neural
Networks 1989; Bourlard & Kamp, 1988). Nonlinear networks bend that subspace into a
curved manifold (Hinton & Salakhutdinov, Science 2006).

This chapter checks the linear case with principal angles, then puts 2-D maps of the
digits from PCA, t-SNE and three autoencoders side by side.
"""

# %%
# A linear autoencoder spans the PCA subspace
# -------------------------------------------
# ``activation="identity"`` makes every layer linear, ``likelihood="gaussian"`` makes the
# loss the squared error (chapter 2) and ``scale="none"`` trains on the data as they are,
# so the optimum is PCA's subspace. The decoder is then an affine map
# :math:`g(z) = Wz + b`; its columns :math:`W e_i = g(e_i) - g(0)` come from
# ``inverse_transform``. The **principal angles** between the column space of W and the
# span of PCA's first k components are all zero when the two subspaces are the same
# (Björck & Golub, "Numerical methods for computing angles between linear subspaces",
# Mathematics of Computation 1973; :func:`scipy.linalg.subspace_angles`).

import os

import matplotlib.pyplot as plt
import numpy as np
from scipy.linalg import subspace_angles
from sklearn.decomposition import PCA
from sklearn.linear_model import LinearRegression
from sklearn.manifold import TSNE
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

import aekit

QUICK = bool(os.environ.get("AEKIT_DOCS_QUICK"))  # the site's quick build: few epochs
EPOCHS = 40 if QUICK else 300

X, y = aekit.datasets.load("digits")
X_test, y_test = aekit.datasets.load("digits", split="test")
if QUICK:  # fewer training rows too
    X, y = X[:500], y[:500]

k = 4
pca = PCA(n_components=k).fit(X)
linear = aekit.AE(n_components=k, activation="identity", likelihood="gaussian",
                  scale="none", hidden_layer_sizes=(64,), max_iter=EPOCHS,
                  random_state=0).fit(X)
W = (linear.inverse_transform(np.eye(k)) - linear.inverse_transform(np.zeros((1, k)))).T
angles = np.degrees(subspace_angles(W, pca.components_.T))
random = np.degrees(subspace_angles(np.random.default_rng(0).normal(size=(64, k)),
                                    pca.components_.T))
print("principal angles, linear AE vs PCA (degrees):", np.round(angles, 2))
print("principal angles, a random subspace vs PCA:  ", np.round(random, 1))

# %%
# The subspace is PCA's, but the coordinates need not be: any invertible linear map of
# the code gives the same reconstructions, so the linear AE's code is PCA's code up to
# such a map (and its axes are not ordered by variance). A linear regression from one code
# to the other shows it, and the reconstruction errors agree.

fit = LinearRegression().fit(linear.transform(X_test), pca.transform(X_test))
r2 = fit.score(linear.transform(X_test), pca.transform(X_test))
print(f"R^2 of PCA's code from the linear AE's code: {r2:.4f}")
mse_ae = np.mean((linear.reconstruct(X_test) - X_test) ** 2)
mse_pca = np.mean((pca.inverse_transform(pca.transform(X_test)) - X_test) ** 2)
print(f"test reconstruction MSE: linear AE {mse_ae:.5f}, PCA {mse_pca:.5f}")

fig, axes = plt.subplots(2, k, figsize=(2 * k, 4))
for i in range(k):
    axes[0, i].imshow(pca.components_[i].reshape(8, 8), cmap="RdBu_r")
    axes[1, i].imshow(W[:, i].reshape(8, 8), cmap="RdBu_r")
for ax in axes.ravel():
    ax.set_axis_off()
axes[0, 0].set_title("PCA components", fontsize=9, loc="left")
axes[1, 0].set_title("linear AE decoder columns (same span)", fontsize=9, loc="left")
fig.tight_layout()

# %%
# Curved maps
# -----------
# With nonlinear layers the code can follow a curved manifold. Two numbers per digit,
# five ways: PCA, t-SNE (van der Maaten & Hinton, "Visualizing Data using t-SNE", JMLR
# 2008), a deterministic AE, a VAE, and ``neighbor_ae`` (:class:`aekit.models.NeighborAE`),
# an autoencoder whose code also keeps each row's nearest neighbours close, with a
# t-SNE-like term over a k-NN table of the inputs; and ``neighbor_ae`` with
# ``embedding="tsne"``, whose map is t-SNE's own (computed by the optional package
# openTSNE) with a decoder trained on it, placing new rows on the map by optimising their
# t-SNE cost against it. t-SNE embeds only the rows it is given, so every map here is of
# the test digits; the autoencoders and PCA were fitted on the training digits and map
# new rows with ``transform``.
#
# Two numbers judge a map: **trustworthiness** (Venna & Kaski, 2001; are a point's
# neighbours on the map its neighbours in the data? 1 is perfect) and the 5-fold
# cross-validated accuracy of a 1-nearest-neighbour classifier on the map (the labels are
# used for that score only).

maps = {
    "PCA": PCA(n_components=2).fit(X).transform(X_test),
    "t-SNE": TSNE(n_components=2, random_state=0).fit_transform(X_test),
}
for name, model in [("AE", aekit.AE(n_components=2, max_iter=EPOCHS, random_state=0)),
                    ("VAE", aekit.VAE(n_components=2, max_iter=EPOCHS, random_state=0)),
                    ("neighbor_ae", aekit.get_model("neighbor_ae", n_components=2,
                                                    max_iter=EPOCHS, random_state=0)),
                    ("t-SNE map AE", aekit.get_model("neighbor_ae", n_components=2,
                                                     embedding="tsne", max_iter=EPOCHS,
                                                     random_state=0))]:
    maps[name] = model.fit(X).transform(X_test)

fig, axes = plt.subplots(1, len(maps), figsize=(2.9 * len(maps), 3.4))
print(f"{'map':>12} {'trustworthiness':>16} {'1-NN accuracy':>14}")
for ax, (name, Z) in zip(axes, maps.items()):
    trust = aekit.evaluation.trustworthiness(X_test, Z, n_neighbors=5)
    acc = cross_val_score(KNeighborsClassifier(n_neighbors=1), Z, y_test, cv=5).mean()
    print(f"{name:>12} {trust:16.3f} {acc:14.3f}")
    ax.scatter(Z[:, 0], Z[:, 1], c=y_test, cmap="tab10", s=6)
    ax.set_title(f"{name}\ntrust {trust:.2f}, 1-NN {acc:.2f}", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()

# %%
# What the maps are for
# ---------------------
# t-SNE optimises the map itself: it has no encoder for new rows and no decoder. The
# autoencoders have both, so new digits are placed without refitting and any point of
# their map decodes to an image (the manifold grid of chapter 1). ``neighbor_ae`` adds
# t-SNE's neighbourhood term to an autoencoder's likelihood, trading some reconstruction
# for neighbourhoods. With ``embedding="tsne"`` the map is t-SNE's, so it keeps
# neighbours as t-SNE does, for new rows too; the price is a slower ``transform`` (each
# new row is optimised against the map) and a model file that keeps the training rows.
# ``metric`` says how rows are compared to find neighbours: ``metric="hellinger"``
# compares the square roots of the grey levels, which on Fashion-MNIST gives purer
# clusters (1-NN accuracy 0.851 against 0.831 on the test images) but keeps Euclidean
# neighbourhoods less well (trustworthiness 0.977 against 0.985; BENCHMARKS.md).
# The VAE's map is also shaped by its prior, whose KL term pulls the codes towards
# N(0, I) (chapter 5). ``benchmarks/fashion_2d.py`` in the repository compares these
# maps, and UMAP, on Fashion-MNIST.
