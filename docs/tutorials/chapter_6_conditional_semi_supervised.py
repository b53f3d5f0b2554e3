r"""
6. Conditional and semi-supervised models
=========================================

Labels, when there are some, can enter a VAE in two ways.

* The **conditional VAE** (Sohn, Lee & Yan, "Learning Structured Output Representation
  using Deep Conditional Generative Models", NeurIPS 2015) conditions every distribution
  on a known c: encoder q(z | x, c), decoder p(x | z, c), and the bound is on
  :math:`\log p(x \mid c)`. The code no longer needs to say which digit it is, so it
  keeps the rest, the style; and the model generates on demand: "a 3, please".
* **M2** (Kingma, Rezende, Mohamed & Welling, "Semi-Supervised Learning with Deep
  Generative Models", NeurIPS 2014, arXiv:1406.5298) makes the class a second latent
  variable. A labelled row is a CVAE row; for an unlabelled row the bound sums over the
  classes, weighted by a classifier q(y | x) that is trained on both. A few labels and
  many unlabelled rows give a classifier and a conditional generator at once.
"""

# %%
# The CVAE: generation on demand
# ------------------------------
# ``fit(X, y)``, and ``sample(n, y=...)`` decodes prior draws of z under the class asked
# for. With the same ``random_state`` every row below decodes the same eight codes, so a
# column keeps its style (slant, thickness) across the ten classes.

import os

import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.semi_supervised import LabelSpreading

import aekit
from aekit.reporting import plotting

QUICK = bool(os.environ.get("AEKIT_DOCS_QUICK"))  # the site's quick build: few epochs
EPOCHS = 20 if QUICK else 200

X, y = aekit.datasets.load("digits")
X_test, y_test = aekit.datasets.load("digits", split="test")
if QUICK:  # fewer training rows too
    X, y = X[:500], y[:500]

cvae = aekit.CVAE(n_components=2, likelihood="bernoulli", max_iter=EPOCHS,
                  random_state=0).fit(X, y)
grid = np.stack([cvae.sample(8, y=digit, random_state=0) for digit in range(10)])
fig, ax = plt.subplots(figsize=(4, 5))
ax.imshow(grid.reshape(10, 8, 8, 8).transpose(0, 2, 1, 3).reshape(80, 64),
          cmap="gray_r", vmin=0, vmax=1)
ax.set_yticks(np.arange(10) * 8 + 3.5, [str(d) for d in range(10)])
ax.set_xticks([])
ax.set_title("sample(8, y=digit, random_state=0)", fontsize=9)
fig.tight_layout()

# %%
# Analogies: the code of a test digit, decoded under every class. The style of the digit
# on the left carries over to the others.

fig, ax = plt.subplots(figsize=(7, 4))
plotting.cvae_analogies(cvae, X_test, y_test, n=5, ax=ax, image_shape=(8, 8))
fig.tight_layout()

# %%
# A density is a classifier
# -------------------------
# ``score_samples(X, y=c)`` is the importance-sampled :math:`\log p(x \mid c)`. With the
# class frequencies as :math:`p(c)`, Bayes' rule classifies:
# :math:`\hat c = \arg\max_c \log p(x \mid c) + \log p(c)`. A generative classifier
# from a model trained to reproduce digits, not to tell them apart:

log_prior = np.log(np.bincount(y) / len(y))
log_joint = np.stack([cvae.score_samples(X_test, y=np.full(len(X_test), c))
                      for c in range(10)], axis=1) + log_prior
accuracy = accuracy_score(y_test, log_joint.argmax(1))
print(f"CVAE as a Bayes classifier: test accuracy {accuracy:.3f}")

# %%
# M2: 50 labels, 1,387 unlabelled digits
# --------------------------------------
# Five labelled digits per class; every other label is replaced by -1, as in
# :mod:`sklearn.semi_supervised`. Against three baselines given the same 50 labels: a
# logistic regression on the 50 labelled pixels alone; label spreading over a k-NN graph
# of all rows (Zhou et al., "Learning with Local and Global Consistency", NeurIPS 2003);
# and M1 from the same paper, a logistic regression on the codes of a VAE trained on all
# rows without labels.

rng = np.random.default_rng(0)
labelled = np.concatenate([rng.choice(np.flatnonzero(y == c), 5, replace=False)
                           for c in range(10)])
y_semi = np.full_like(y, -1)
y_semi[labelled] = y[labelled]

m2 = aekit.M2(n_components=8, likelihood="bernoulli", max_iter=EPOCHS,
              random_state=0).fit(X, y_semi)
pixels = LogisticRegression(max_iter=2000).fit(X[labelled], y[labelled])
spreading = LabelSpreading(kernel="knn", n_neighbors=7).fit(X, y_semi)
vae = aekit.VAE(n_components=8, likelihood="bernoulli", max_iter=EPOCHS,
                random_state=0).fit(X)
m1 = LogisticRegression(max_iter=2000).fit(vae.transform(X[labelled]), y[labelled])

results = {
    "logistic regression, 50 labels": pixels.predict(X_test),
    "label spreading": spreading.predict(X_test),
    "M1: VAE codes + logistic regression": m1.predict(vae.transform(X_test)),
    "M2": m2.predict(X_test),
}
for name, pred in results.items():
    print(f"{name:>36}: test accuracy {accuracy_score(y_test, pred):.3f}")

# %%
# Label spreading is a strong baseline on digits, whose classes are well separated in
# pixel space already; M2's advantage is that the same fitted model is also a
# conditional generator and a density: ``sample(n, y=c)`` draws digits of a class, and
# ``score_samples(X)`` is the marginal :math:`\log p(x) = \log \sum_y p(y)\,p(x\mid y)`
# in nats, like every other model's. (Its ``score`` is that mean log-likelihood, not an
# accuracy: use ``accuracy_score(y, m2.predict(X))``.)

fig, ax = plt.subplots(figsize=(8, 2))
row = np.concatenate([m2.sample(1, y=digit, random_state=1) for digit in range(10)])
ax.imshow(row.reshape(10, 8, 8).transpose(1, 0, 2).reshape(8, 80), cmap="gray_r",
          vmin=0, vmax=1)
ax.set_axis_off()
ax.set_title("M2: one sample per class", fontsize=9)
fig.tight_layout()
print(f"M2 mean test log p(x): {m2.score(X_test):.2f} nats")
