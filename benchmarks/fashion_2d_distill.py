"""Probe for the 2-D map goal: how well does an encoder generalise a t-SNE map?

t-SNE (scikit-learn, PCA initialisation, seed 0) embeds ``n_train`` Fashion-MNIST training
images (a fixed permutation, seed 0); an MLP encoder 784-512-256-2 (Adam 1e-3, batch 128)
is regressed onto that map (standardised) for ``epochs`` epochs; then the next 2,000
training images of the permutation, never seen by t-SNE or the encoder, are mapped by it.
Printed: the 1-NN accuracy of the held-out codes against the encoder's codes of the
training images (``acc_encoder``) and against t-SNE's own map (``acc_vs_tsne_codes``), the
leave-one-out 1-NN accuracy inside t-SNE's map of the training images (``tsne_train_loo``,
what a perfect out-of-sample map could reach), trustworthiness (k=5) of the held-out
codes, the times, and the final training loss (mean squared distance to t-SNE's codes, in
standard deviations). The test images are not used.

It separates the two things that hold ``neighbor_ae`` back (BENCHMARKS.md, "Fashion-MNIST
2-D maps"): the neighbour loss (free codes under it reach 0.68-0.71 leave-one-out, t-SNE
0.80) and the encoder's out-of-sample map (this probe).

``conv`` uses a convolutional encoder instead (two stride-2 3x3 convolutions of 32 and 64
channels, then 256 units and the 2-D code). ``shift=S`` augments the regression: every
training image of a minibatch is translated by its own random offset of up to S pixels in
each direction (zero fill), with the same target: a shifted article should land where the
article does.

Usage: python benchmarks/fashion_2d_distill.py N_TRAIN EPOCHS [conv] [shift=S]
(one JSON line)
"""

import json
import sys
import time

import numpy as np
import torch
from sklearn.manifold import TSNE, trustworthiness
from sklearn.neighbors import KNeighborsClassifier
from torch import nn

import aekit

torch.set_num_threads(1)
n_train, n_held = int(sys.argv[1]), 2000
epochs = int(sys.argv[2])
X, y = aekit.datasets.load("fashion-mnist", split="train")
X = X.reshape(len(X), -1).astype(np.float32)
perm = np.random.default_rng(0).permutation(len(X))
tr, ho = perm[:n_train], perm[n_train:n_train + n_held]
t = time.time()
Y = TSNE(2, init="pca", random_state=0, n_jobs=1).fit_transform(X[tr]).astype(np.float32)
t_tsne = time.time() - t
Y = (Y - Y.mean(0)) / Y.std(0)
conv = "conv" in sys.argv[3:]
shift = next((int(a.split("=")[1]) for a in sys.argv[3:] if a.startswith("shift=")), 0)


def translate(xb: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each 28x28 row moved by its own offset in [-shift, shift]^2, zero fill."""
    imgs = nn.functional.pad(xb.view(-1, 1, 28, 28), (shift,) * 4)
    off = torch.randint(0, 2 * shift + 1, (len(xb), 2), generator=gen)
    rows = off[:, 0, None] + torch.arange(28)                     # (B, 28)
    cols = off[:, 1, None] + torch.arange(28)
    b = torch.arange(len(xb))[:, None, None]
    return imgs[:, 0][b, rows[:, :, None], cols[:, None, :]].reshape(len(xb), -1)


if conv:
    enc = nn.Sequential(nn.Unflatten(1, (1, 28, 28)),
                        nn.Conv2d(1, 32, 3, stride=2, padding=1), nn.ReLU(),     # 14x14
                        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),    # 7x7
                        nn.Flatten(), nn.Linear(64 * 7 * 7, 256), nn.ReLU(), nn.Linear(256, 2))
else:
    enc = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                        nn.Linear(256, 2))
opt = torch.optim.Adam(enc.parameters(), 1e-3)
Xt, Yt = torch.tensor(X[tr]), torch.tensor(Y)
g = torch.Generator().manual_seed(0)
t = time.time()
for _ in range(epochs):
    order = torch.randperm(len(Xt), generator=g)
    for i in range(0, len(Xt), 128):
        b = order[i:i + 128]
        xb = translate(Xt[b], g) if shift else Xt[b]
        loss = (enc(xb) - Yt[b]).pow(2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
t_fit = time.time() - t
with torch.no_grad():
    ztr, zho = enc(Xt).numpy(), enc(torch.tensor(X[ho])).numpy()
acc_enc = KNeighborsClassifier(1).fit(ztr, y[tr]).score(zho, y[ho])
acc_tsne_train_map = KNeighborsClassifier(1).fit(Y, y[tr]).score(zho, y[ho])
loo = KNeighborsClassifier(2).fit(Y, y[tr]).kneighbors(Y, 2, return_distance=False)[:, 1]
tw = trustworthiness(X[ho], zho, n_neighbors=5)
print(json.dumps(dict(n_train=n_train, epochs=epochs, encoder="conv" if conv else "mlp",
                      shift=shift,
                      acc_encoder=acc_enc,
                      acc_vs_tsne_codes=acc_tsne_train_map,
                      tsne_train_loo=float((y[tr][loo] == y[tr]).mean()), trust5=tw,
                      t_tsne=t_tsne, t_fit=t_fit, final_loss=loss.item())))
