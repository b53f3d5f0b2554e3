"""
8. Applications: anomalies, missing values, synthetic rows, retrieval
=====================================================================

A trained autoencoder is a density, a generator and an encoder at once, and each gives an
application without a second model:

* **anomaly detection**: rows the density finds unlikely are unusual, and because the
  decoder's likelihood factorises over features, the score says *which* features are odd;
* **imputation and synthetic data**: a likelihood that models each column of a table
  with its own distribution and leaves missing cells out fills holes and draws new rows;
* **retrieval**: nearest neighbours in code space find similar items in a few numbers
  per item.
"""

# %%
# Anomalies, and where they are
# -----------------------------
# :class:`aekit.AnomalyDetector` wraps a model (a VAE by default); a row's anomaly score
# is, for a VAE, -ELBO(x) in nats: -log p(x) plus how badly the encoder infers the row's
# code (``score_type="nll"`` gives -log p(x) alone). We train it on the training digits, then score test digits of
# which 30 have been damaged: a 3 x 3 block of pixels set to full ink somewhere in the
# image, a defect no training digit has.

import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

import aekit

QUICK = bool(os.environ.get("AEKIT_DOCS_QUICK"))  # the site's quick build: few epochs
EPOCHS = 20 if QUICK else 200

X, y = aekit.datasets.load("digits")
X_test, y_test = aekit.datasets.load("digits", split="test")
if QUICK:  # fewer training rows too
    X, y = X[:500], y[:500]

rng = np.random.default_rng(0)
damaged = rng.choice(len(X_test), size=30, replace=False)
X_new = X_test.copy().reshape(-1, 8, 8)
for i in damaged:
    r, c = rng.integers(0, 6, size=2)
    X_new[i, r:r + 3, c:c + 3] = 1.0
X_new = X_new.reshape(-1, 64)
is_damaged = np.isin(np.arange(len(X_new)), damaged)

det = aekit.AnomalyDetector(aekit.VAE(likelihood="bernoulli", max_iter=EPOCHS),
                            random_state=0).fit(X)
scores = det.anomaly_score(X_new)                 # -ELBO(x), higher = more abnormal
print(f"AUCROC damaged vs intact: {roc_auc_score(is_damaged, scores):.3f}")
print(f"flagged: {(det.predict(X_new) == -1).sum()} rows, of which "
      f"{(is_damaged & (det.predict(X_new) == -1)).sum()} damaged "
      f"(threshold {det.threshold_:.1f} nats, rule {det.threshold_rule_})")

# %%
# ``feature_scores`` splits a row's reconstruction score over its features,
# -log p(x_j | z): a heat map over the pixels that points at the damage.

top = np.argsort(scores)[::-1][:6]
heat = det.feature_scores(X_new[top]).reshape(-1, 8, 8)
fig, axes = plt.subplots(2, 6, figsize=(9, 3.2))
for j, i in enumerate(top):
    axes[0, j].imshow(X_new[i].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
    axes[0, j].set_title(f"{scores[i]:.0f} nats" + (" *" if is_damaged[i] else ""),
                         fontsize=8)
    axes[1, j].imshow(heat[j], cmap="magma")
for ax in axes.ravel():
    ax.set_axis_off()
fig.suptitle("least likely test digits (* damaged) and -log p(x_j | z) per pixel",
             fontsize=9)
fig.tight_layout()

# %%
# The detector keeps both conventions: scikit-learn's (``score_samples`` and
# ``decision_function`` higher = more normal, ``predict`` +1 / -1) and PyOD's
# (``decision_scores_`` and ``anomaly_score`` higher = more abnormal, ``threshold_``,
# ``labels_``). ``fit_threshold(X_normal, fpr=0.01)`` sets the cut so that about 1 % of
# new normal rows are flagged.

# %%
# A table with categories and holes
# ---------------------------------
# A table of 1,500 people, made up so that its columns depend on each other: age, an
# education level (three levels, more likely higher for the young), an income that rises
# with age and education, whether they own a car (likelier with income) and a count of
# visits. Then 15 % of the cells are removed at random.

n = 600 if QUICK else 1500
age = rng.uniform(20, 70, n).round()
edu_p = np.stack([0.15 + (age - 20) / 125, np.full(n, 0.4), 0.45 - (age - 20) / 125], 1)
education = np.array(["school", "bachelor", "master"])[
    [rng.choice(3, p=p / p.sum()) for p in edu_p]]
edu_level = pd.Series(education).map({"school": 0, "bachelor": 1, "master": 2}).to_numpy()
income = 20 + 0.6 * age + 12 * edu_level + rng.normal(0, 5, n)
car = rng.random(n) < 1 / (1 + np.exp(-(income - 55) / 6))
visits = rng.poisson(1 + age / 20)
full = pd.DataFrame({"age": age, "education": pd.Categorical(education),
                     "income": income.round(1), "car": car, "visits": visits})
table = full.astype(object).mask(rng.random(full.shape) < 0.15)
table = table.astype({"age": float, "income": float, "visits": float})
table["education"] = table["education"].astype("category")
print(table.head(8))

# %%
# ``likelihood="mixed"`` (what the default, ``"auto"``, chooses for a DataFrame with
# categories or holes; named here to be explicit) gives each column its own
# p(x_j | z): a Gaussian with a learned sigma for numbers, a Bernoulli for yes/no, a
# Categorical over the levels of text or category columns, and a Poisson for a column
# declared ``"count"``. A missing cell is left out of the likelihood, so no row is
# dropped and nothing is filled in by hand before training (Nazábal et al., "Handling
# Incomplete Heterogeneous Data using VAEs",
# 2018, arXiv:1807.03653).

vae = aekit.VAE(n_components=4, likelihood="mixed", columns={"visits": "count"},
                max_iter=EPOCHS, random_state=0).fit(table)
print(vae.columns_)

# %%
# ``impute`` fills every hole with the decoder's mean at the code of the row's observed
# part (the most probable level for a category) and keeps the observed cells. Against
# filling with the column mean or the most frequent level, on the cells we removed:

filled = vae.impute(table)
holes = table.isna()
mean_fill = pd.DataFrame(SimpleImputer(strategy="mean").fit_transform(
    table[["age", "income"]]), columns=["age", "income"])
mode_edu = table["education"].mode()[0]
print(f"{'column':>10} {'aekit':>8} {'baseline':>9}   (RMSE for numbers, error rate for "
      f"education)")
for col in ["age", "income"]:
    h = holes[col].to_numpy()
    rmse = np.sqrt(np.mean((filled[col][h] - full[col][h]) ** 2))
    base = np.sqrt(np.mean((mean_fill[col][h] - full[col][h]) ** 2))
    print(f"{col:>10} {rmse:8.2f} {base:9.2f}")
h = holes["education"].to_numpy()
print(f"{'education':>10} {np.mean(filled['education'][h] != full['education'][h]):8.2f} "
      f"{np.mean(mode_edu != full['education'][h]):9.2f}")

# %%
# ``sample`` draws new rows from p(x | z) at prior draws of z, in the table's own columns
# and types. A synthetic table is useful when it keeps the relations between columns:
# here, income by education level and car ownership by income.

synthetic = vae.sample(1500, random_state=0)
print(synthetic.head())
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
for name, frame, offset in [("real", full, -0.15), ("synthetic", synthetic, 0.15)]:
    means = frame.groupby("education", observed=True)["income"].mean()
    means = means.reindex(["school", "bachelor", "master"])
    axes[0].bar(np.arange(3) + offset, means, width=0.3, label=name)
    bins = pd.cut(frame["income"].astype(float), [0, 40, 50, 60, 70, 200])
    axes[1].plot(frame.groupby(bins, observed=False)["car"].mean().to_numpy(), "o-",
                 label=name)
axes[0].set_xticks(range(3), ["school", "bachelor", "master"])
axes[0].set_ylabel("mean income")
axes[1].set_xticks(range(5), ["<40", "40-50", "50-60", "60-70", ">70"])
axes[1].set_xlabel("income")
axes[1].set_ylabel("share owning a car")
for ax in axes:
    ax.legend(fontsize=8)
fig.tight_layout()

# %%
# ``score_samples`` of this model is the log-density of each row's observed part, so the
# same model is an anomaly detector for the table: ``aekit.AnomalyDetector(aekit.VAE(
# likelihood="mixed"))``, whose ``feature_scores`` names the odd column.
#
# Retrieval by codes
# ------------------
# A code of 16 numbers per digit is a compact index: the nearest codes of a query are
# digits that look like it. Precision at 5 (the share of the 5 neighbours with the query's
# label, which no model saw) against the raw 64 pixels and PCA with 16 components. On
# these small images pixels and PCA are strong baselines: a VAE's code is trained for the
# likelihood, not for neighbourhoods (chapter 3's ``neighbor_ae`` is), so measure before
# indexing by codes.

from sklearn.decomposition import PCA  # noqa: E402

enc = aekit.VAE(n_components=16, likelihood="bernoulli", max_iter=EPOCHS,
                random_state=0).fit(X)
pca = PCA(n_components=16).fit(X)


def precision_at_5(database, queries):
    index = NearestNeighbors(n_neighbors=5).fit(database)
    _, found = index.kneighbors(queries)
    return np.mean(y[found] == y_test[:, None]), found


for name, (db, q) in {"pixels (64)": (X, X_test),
                      "PCA (16)": (pca.transform(X), pca.transform(X_test)),
                      "VAE codes (16)": (enc.transform(X), enc.transform(X_test))}.items():
    p5, found = precision_at_5(db, q)
    print(f"{name:>15}: precision@5 = {p5:.3f}")

fig, axes = plt.subplots(4, 6, figsize=(6, 4.4))
for row, qi in enumerate([0, 1, 2, 3]):
    axes[row, 0].imshow(X_test[qi].reshape(8, 8), cmap="gray_r")
    for j, k in enumerate(found[qi]):
        axes[row, j + 1].imshow(X[k].reshape(8, 8), cmap="gray_r")
for ax in axes.ravel():
    ax.set_axis_off()
axes[0, 0].set_title("query", fontsize=8)
axes[0, 3].set_title("5 nearest codes", fontsize=8)
fig.tight_layout()
