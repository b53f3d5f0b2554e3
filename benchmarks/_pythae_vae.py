"""Train pythae's VAE on the reference network and report epoch times and test NLL as JSON.

Runs in pythae's own environment (see benchmarks/speed.py --pythae-python); reads the data
from .npy files written by the driver, so both libraries see exactly the same arrays.
Usage: python _pythae_vae.py TRAIN.npy TEST.npy EPOCHS K N_TEST SEED [DEVICE]
(DEVICE is cpu, the default, or cuda: pythae then trains and scores on its first GPU.)
"""

import json
import resource
import sys
import tempfile
import time

import numpy as np
import torch
from pythae.models import VAE, VAEConfig
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseEncoder
from pythae.pipelines import TrainingPipeline
from pythae.trainers import BaseTrainerConfig
from pythae.trainers.training_callbacks import TrainingCallback
from torch import nn

LATENT = 16


class Encoder(BaseEncoder):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU())
        self.mu, self.log_var = nn.Linear(256, LATENT), nn.Linear(256, LATENT)

    def forward(self, x):
        h = self.body(x.reshape(x.shape[0], -1))
        return ModelOutput(embedding=self.mu(h), log_covariance=self.log_var(h))


class Decoder(BaseDecoder):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(LATENT, 256), nn.ReLU(), nn.Linear(256, 512),
                                  nn.ReLU(), nn.Linear(512, 784), nn.Sigmoid())

    def forward(self, z):
        return ModelOutput(reconstruction=self.body(z))


class EpochTimer(TrainingCallback):
    def __init__(self):
        self.marks = []

    def on_epoch_begin(self, training_config, **kwargs):
        self.marks.append(["begin", time.perf_counter()])

    def on_epoch_end(self, training_config, **kwargs):
        self.marks.append(["end", time.perf_counter()])


def main():
    train_path, test_path, epochs, k, n_test, seed = sys.argv[1:7]
    device = sys.argv[7] if len(sys.argv) > 7 else "cpu"
    torch.manual_seed(int(seed))
    X = np.load(train_path)
    X_test = np.load(test_path)[: int(n_test)]
    model = VAE(VAEConfig(input_dim=(784,), latent_dim=LATENT, reconstruction_loss="bce"),
                encoder=Encoder(), decoder=Decoder())
    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as out:
        config = BaseTrainerConfig(output_dir=out, num_epochs=int(epochs), learning_rate=1e-3,
                                   per_device_train_batch_size=128, optimizer_cls="Adam",
                                   no_cuda=device == "cpu", steps_saving=None, seed=int(seed))
        TrainingPipeline(model=model, training_config=config)(train_data=X, callbacks=[timer])
    begins = [t for kind, t in timer.marks if kind == "begin"]
    ends = [t for kind, t in timer.marks if kind == "end"]
    times = [e - b for b, e in zip(begins, ends)]
    model.eval()
    torch.manual_seed(0)
    # despite its name, pythae 0.1.2's get_nll returns the mean log-likelihood (negative)
    log_likelihood = model.get_nll(torch.from_numpy(X_test).to(device), n_samples=int(k),
                                   batch_size=100)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps({"times": times, "nll": -float(log_likelihood), "peak_rss_mib": peak}))


if __name__ == "__main__":
    main()
