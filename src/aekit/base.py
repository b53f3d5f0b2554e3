"""BaseAutoencoder: the scikit-learn estimator every aekit model shares.

A model subclass implements a few hooks; everything a user calls lives here:

=========================  ==================================================================
hook                       contract
=========================  ==================================================================
``_encoder_outputs``       encoder output width (k for a code, 2k for mean and log-variance)
``_build(input_shape)``    networks as an ``nn.Module`` (default: encoder, decoder, likelihood)
``_loss(x, y)``            :class:`~aekit.training.LossTerms`, batch-averaged, nats per example
``_encode(x)``             the code / posterior mean, ``(B, k)``
``_log_likelihood(x, e)``  log p(x) per row ``(B,)`` given common noise ``e`` of shape ``(K, k)``
``_elbo(x, e)``            the evidence lower bound per row ``(B,)``
``_sample_latent(n, g)``   ``n`` latent draws from the model's prior, ``(n, k)``
=========================  ==================================================================

Optional hooks: ``_labels_tensor`` (models that use ``y``), ``_pretrain(x, y)`` (runs once
before the loop, e.g. greedy layer-wise pretraining), ``_on_epoch_start(epoch)`` (e.g. a KL
schedule; must depend only on ``epoch`` so a resumed run matches), ``_on_epoch_end(epoch,
x)`` (extra per-epoch numbers for ``history_``), ``_after_fit(x)``, and for models with
several optimizers ``_configure_optimizers`` / ``_train_step``. Class attribute
``_expected_failed_checks`` maps scikit-learn check names to the reason a check cannot pass.

Rows are flat inside: image input ``(n, H, W)`` or ``(n, C, H, W)`` is validated, flattened
to ``(n, D)`` and its shape kept in ``input_shape_``; outputs in data space get it back.
"""

from __future__ import annotations

import inspect
import math
import numbers
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions
from torch import Tensor, nn
from torch.distributions import Distribution

from . import distributed, streaming
from .distributions import LIKELIHOODS, get_likelihood
from .inference import InferenceMixin, _seed
from .nn import ACTIVATIONS, ARCHITECTURES, build_decoder, build_encoder
from .sources import Source
from .training import (
    ON_NAN,
    PRECISIONS,
    LossTerms,
    TrainingStepMixin,
    compiled,
    fit_loop,
    resolve_device,
)
from .validation import ValidationMixin


class BaseAutoencoder(InferenceMixin, TrainingStepMixin, ValidationMixin,
                      ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Shared estimator behaviour; see the module docstring for the hooks a model writes.

    Parameters common to every model (a subclass's docstring lists them again):

    n_components : int, default=2
        Size of the code (latent dimensions).
    hidden_layer_sizes : tuple of int, default=(256, 128)
        Encoder hidden widths; the decoder mirrors them. For image input the conv
        networks use the last width for their dense layer.
    activation : {"relu", "leaky_relu", "elu", "gelu", "silu", "tanh", "sigmoid", "identity"}
        Hidden-layer nonlinearity; "identity" makes a linear autoencoder.
    likelihood : str, default="gaussian"
        p(x|z), one of :func:`aekit.distributions.list_likelihoods`: "gaussian" is MSE,
        "bernoulli" is binary cross-entropy, and so on.
    likelihood_scale : float, default=1.0
        The fixed sigma of "gaussian", b of "laplace", the initial sigma of "gaussian_learned".
    architecture : {"auto", "mlp", "conv"}, default="auto"
        "auto" uses small conv nets for image-shaped input and MLPs for flat rows.
    max_iter : int, default=100
        Maximum number of epochs.
    batch_size : int, default=128
    learning_rate : float, default=1e-3
        Adam step size.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows, stop when the validation loss has
        not improved by ``tol`` for ``n_iter_no_change`` epochs and keep the best weights.
        Without it the training loss is watched the same way.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=10
    tol : float, default=1e-4
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, minibatch order and noise; the global RNGs of torch
        and numpy are left untouched. Also seeds the evaluation noise (0 when None).
    verbose : int, default=0
        1 shows a progress bar; 2 also prints every epoch.
    device : str, default="auto"
        "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
    precision : {"32", "bf16-mixed", "16-mixed"}, default="32"
        "bf16-mixed" / "16-mixed" run the networks' matrix work under autocast (fp16 with
        a gradient scaler) while weights, likelihoods, KL terms and reductions stay float32.
    on_nan : {"restore", "raise", "skip_batch"}, default="restore"
        What a non-finite training loss does. "restore": stop, restore the weights of the
        last finished epoch and warn (ConvergenceWarning) naming likely causes; "raise":
        raise :class:`aekit.training.DivergenceError`; "skip_batch": skip that minibatch's
        update and go on (an epoch with no usable minibatch stops as "restore" does).
    binarize : {"none", "dynamic"}, default="none"
        "dynamic": every epoch trains on fresh binary draws x ~ Bernoulli(grey level), the
        protocol of likelihood results on binarized MNIST-like data (Burda et al. 2015);
        needs data in [0, 1]. Score on a fixed binarization of the test set
        (:func:`aekit.datasets.binarize`).
    compile : bool, default=False
        Run the loss (training and validation) and ``score_samples`` through
        ``torch.compile``. The first call compiles (tens of seconds on a CPU), so it pays
        off on long runs; where the compiler is unavailable aekit warns and runs eagerly.
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "hidden_layer_sizes": ["array-like"],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "likelihood": [StrOptions(set(LIKELIHOODS.names()))],
        "likelihood_scale": [Interval(Real, 0, None, closed="neither")],
        "architecture": [StrOptions(set(ARCHITECTURES))],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "device": [str],
        "precision": [StrOptions(set(PRECISIONS))],
        "on_nan": [StrOptions(set(ON_NAN))],
        "compile": ["boolean"],
        "binarize": [StrOptions({"none", "dynamic"})],
    }

    def __init__(self, n_components=2, *, hidden_layer_sizes=(256, 128), activation="relu",
                 likelihood="gaussian", likelihood_scale=1.0, architecture="auto",
                 max_iter=100, batch_size=128, learning_rate=1e-3, early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=10, tol=1e-4, random_state=None,
                 verbose=0, device="auto", precision="32", on_nan="restore", compile=False,
                 binarize="none"):
        self.n_components = n_components
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.likelihood = likelihood
        self.likelihood_scale = likelihood_scale
        self.architecture = architecture
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose
        self.device = device
        self.precision = precision
        self.on_nan = on_nan
        self.compile = compile
        self.binarize = binarize

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Let a model declare only its own parameters plus ``**kwargs``.

        scikit-learn reads parameters from the ``__init__`` signature, so the full one
        (the model's own, then its parent's, which already include the shared ones) is
        set as ``__init__.__signature__``.
        """
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        own = inspect.signature(init).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in own.values()):
            return
        parent = next(b for b in cls.__mro__[1:] if "__init__" in b.__dict__)
        base = inspect.signature(parent.__init__).parameters
        params = [p for p in own.values() if p.kind is not p.VAR_KEYWORD]
        params += [p for name, p in base.items()
                   if name != "self" and name not in own and name not in cls._excluded_params]
        init.__signature__ = inspect.Signature(params)

    # ------------------------------------------------------------------ hooks

    @property
    def _encoder_outputs(self) -> int:
        return self.n_components

    def _build(self, input_shape: tuple[int, ...]) -> nn.Module:
        """Encoder, decoder and likelihood for rows of ``input_shape``."""
        n_features = math.prod(input_shape)
        likelihood = get_likelihood(self.likelihood, n_features, self.likelihood_scale)
        hidden = tuple(self.hidden_layer_sizes)
        return nn.ModuleDict({
            "encoder": build_encoder(input_shape, hidden, self._encoder_outputs,
                                     self.activation, self.architecture),
            "decoder": build_decoder(input_shape, hidden, self.n_components, likelihood.n_params,
                                     self.activation, self.architecture),
            "likelihood": likelihood,
        })

    def _loss(self, x: Tensor, y: Tensor | None = None) -> LossTerms:
        raise NotImplementedError

    def _encode(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _decode(self, z: Tensor) -> Distribution:
        """p(x|z) for codes ``z`` of shape ``(..., k)``; event shape ``(D,)``."""
        return self.module_.likelihood(self.module_.decoder(z))

    def _log_likelihood(self, x: Tensor, eps: Tensor) -> Tensor:
        raise NotImplementedError

    def _elbo(self, x: Tensor, eps: Tensor) -> Tensor:
        raise NotImplementedError

    def _sample_latent(self, n_samples: int, generator: torch.Generator) -> Tensor:
        raise NotImplementedError

    def _n_eval_samples(self) -> int:
        """How many noise draws ``score_samples`` uses per row."""
        return 1

    def _after_fit(self, x: Tensor) -> None:
        """Called once after training with the training rows (on the device)."""

    def _pretrain(self, x: Tensor, y: Tensor | None) -> None:
        """Called once after ``_build`` and before the training loop."""

    def _on_epoch_start(self, epoch: int) -> None:
        """Called by the loop before each epoch (1-based)."""

    def _on_epoch_end(self, epoch: int, x: Tensor) -> dict[str, Any]:
        """Extra numbers (floats or lists of floats) for this epoch's ``history_`` row;
        ``x`` are the training rows."""
        return {}

    #: whether ``score_samples`` is a log-density of x (False for deterministic codes,
    #: where it is the decoder log-likelihood at the code).
    _score_is_density: bool = True

    #: why this model cannot train on streamed data (None: it can).
    _streaming_unsupported: str | None = None

    #: parameters of the parent class that this model does not have.
    _excluded_params: tuple[str, ...] = ()

    #: scikit-learn estimator checks this model cannot pass, with the reason.
    _expected_failed_checks: dict[str, str] = {}

    # ---------------------------------------------------------------- fitting

    def fit(self, X: Any, y: Any = None, *, checkpoint_dir: str | None = None,
            checkpoint_every: int = 1, resume: bool = False,
            memory_budget: int | str | None = None) -> BaseAutoencoder:
        """Train on ``X`` (rows, or images of shape (n, H, W) / (n, C, H, W)).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or image-shaped, or data to stream
            A :class:`~aekit.sources.Source`, a path (``.npy``, ``.parquet`` file or folder,
            a folder of images) or a ``np.memmap``: read whole when it fits in
            ``memory_budget``, streamed from disk otherwise (see :mod:`aekit.streaming`).
        y : ignored for unsupervised models.
        checkpoint_dir : str, optional
            Folder for ``checkpoint.safetensors``, written every ``checkpoint_every``
            epochs and at the end (atomically; safetensors + JSON, no pickle).
        checkpoint_every : int, default=1
        resume : bool, default=False
            Continue from the checkpoint in ``checkpoint_dir`` (start afresh when there is
            none). On CPU the result is bit-identical to an uninterrupted run. A checkpoint
            of another model, other parameters or other data is refused.
        memory_budget : int or str, optional
            Bytes (or e.g. ``"2G"``) that data may take in memory; larger data are
            streamed, and the budget bounds the shuffle buffer. Default: a quarter of
            this machine's memory.

        Returns
        -------
        self
        """
        self._validate_params()
        self._check_hyperparameters()
        if not isinstance(checkpoint_every, numbers.Integral) or checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be a positive integer; "
                             f"got {checkpoint_every!r}")
        if resume and checkpoint_dir is None:
            raise ValueError("resume=True needs the checkpoint_dir to resume from")
        budget = streaming.memory_budget(memory_budget)
        for attr in [a for a in vars(self) if a.endswith("_") and not a.startswith("_")]:
            delattr(self, attr)     # a refit starts clean; a refused fit leaves it unfitted
        try:
            data = streaming.resolve(X, budget)
            if isinstance(data, Source):
                fingerprint = self._validate_source(data, checkpoint_dir is not None)
            else:
                X = self._validate_X(data, reset=True)
                self._check_support(X)
                self._check_binarize(X)
            device = distributed.local_device(resolve_device(self.device))
            world = distributed.setup(device)
            self._check_distributed(world)
        except BaseException:
            for attr in ("n_features_in_", "feature_names_in_", "input_shape_"):
                self.__dict__.pop(attr, None)
            raise
        if checkpoint_dir is not None:
            Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
        seeds = np.random.SeedSequence(_seed(self.random_state)).generate_state(4)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seeds[0]))
            module = self._build(self.input_shape_)
        self.module_ = module.to(device)
        # minibatch order and the validation split: the same on every rank; the model's
        # noise: each rank its own stream
        order = torch.Generator(device=device).manual_seed(int(seeds[1]))
        split = torch.Generator(device=device).manual_seed(int(seeds[2]))
        noise_seed = np.random.SeedSequence([int(seeds[3]), world.rank]).generate_state(1)[0]
        noise = torch.Generator(device=device).manual_seed(int(noise_seed))
        if isinstance(data, Source):
            # the loop holds at most about two shuffle buffers of rows
            x = streaming.StreamedRows(data, device, budget // (3 * data.row_bytes))
            x.sha256 = fingerprint
        else:
            x = torch.as_tensor(np.ascontiguousarray(X), device=device)
        if self.precision == "16-mixed":
            self._scaler = torch.amp.GradScaler(device.type)
        if self.compile:
            self._compiled_loss = compiled(self._loss, "the training loss")
        self._world = world
        if world.size > 1:
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [device] if device.type == "cuda" else None
            self._ddp = DistributedDataParallel(distributed.LossModule(self), device_ids=device_ids)
        try:
            y_tensor = self._labels_tensor(y, x.shape[0], device)
            self._generator = order         # what _pretrain draws, every rank must agree on
            self._pretrain(x, y_tensor)
            self._generator = noise
            fit_loop(self, x, y_tensor, order, noise, split,
                     checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every,
                     resume=resume)
        finally:
            for attr in ("_generator", "_scaler", "_compiled_loss", "_world", "_ddp"):
                self.__dict__.pop(attr, None)
        with torch.inference_mode():
            self._after_fit(x)
        return self

    def _check_distributed(self, world: distributed.World) -> None:
        if world.size == 1:
            return
        if type(self)._train_step is not BaseAutoencoder._train_step:
            raise NotImplementedError(f"{type(self).__name__} trains with its own step (several "
                                      "optimizers) and does not support DDP yet; run it in one "
                                      "process")
        if self.batch_size < world.size:
            raise ValueError(f"batch_size={self.batch_size} is the global batch and must be at "
                             f"least the number of processes ({world.size})")

    def _labels_tensor(self, y: Any, n: int, device: torch.device) -> Tensor | None:
        """Unsupervised models ignore ``y``; conditional models override this."""
        return None

    # ----------------------------------------------------- scikit-learn glue

    def __sklearn_is_fitted__(self) -> bool:
        return "module_" in self.__dict__ and "n_iter_" in self.__dict__

    @property
    def _n_features_out(self) -> int:
        return self.n_components

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.pop("_generator", None)   # these two only exist during fit
        state.pop("_scaler", None)
        for attr in ("_compiled_log_likelihood", "_world", "_ddp"):
            state.pop(attr, None)
        return state
