"""BaseAutoencoder: the scikit-learn estimator every aekit model is.

A model declares what it can do (:class:`Capabilities`, read by evaluation, reporting and
the command line) and implements hooks; everything a user calls lives here. Every hook
anything in aekit calls is declared below with its default:

=================================  ==============================================================
hook                               contract (who calls it, when)
=================================  ==============================================================
``_encoder_outputs``               encoder output width (k for a code, 2k for mean and log-var)
``_check_hyperparameters()``       parameter combinations ``_parameter_constraints`` cannot
                                   say (fit and ``aekit.load``, before anything is built)
``_build(input_shape)``            the networks as one ``nn.Module`` (fit, before training;
                                   ``aekit.load``); default: encoder, decoder, likelihood
``_standardize(x)``                the rows as the networks see them (standardised when
                                   ``scale`` says so); models call it before any network on x
``_fit_targets(y)``                check ``y`` before training; returns the fitted attributes it
                                   gives (e.g. ``classes_``) and per-row targets for the loop
``_labels_tensor(t, n, device)``   the targets as a device tensor for the loop (None: no ``y``)
``_pretrain(x, y, ctx)``           once after ``_build`` and the validation split, before the
                                   loop (codebook start, greedy layer-wise pretraining, a
                                   neighbour table); ``ctx.train_index`` names the training
                                   rows; draws from ``ctx.generator``
``_loss(x, y, ctx)``               :class:`~aekit.training.LossTerms`, batch-averaged, nats per
                                   example; noise from ``ctx.randn``; the epoch is ``ctx.epoch``
``_configure_optimizers()``        the optimizer(s); several for adversarial models
``_train_step(x, y, opt, ctx)``    one optimisation step; returns the detached terms to log
``_on_epoch_end(epoch, x)``        extra numbers for this epoch's ``history_`` row
``_after_fit(x)``                  once after training, with the training rows (post-fit stats)
``_encode(x)``                     the code / posterior mean, ``(B, k)``
``_decode(z)``                     p(x|z) for codes ``(..., k)``, event shape ``(D,)``
``_log_likelihood(x, e)``          log p(x) per row ``(B,)`` given common noise ``e`` ``(K, k)``
``_elbo(x, e)``                    the evidence lower bound per row ``(B,)``
``_n_eval_samples()``              how many noise draws ``score_samples`` uses per row
``_sample_latent(n, g)``           ``n`` latent draws from the model's prior, ``(n, k)``
``_posterior(x, *c)``              q(z|x) as ``Independent(Normal)``, batch ``(B,)``, event
                                   ``(k,)`` (``Capabilities.posterior``)
``_prior()``                       p(z) over ``(k,)`` (``Capabilities.posterior``)
``_log_weights(x, *c, e)``         importance log-weights log p(x, z) - log q(z|x), ``(K, B)``
                                   (``Capabilities.importance_weights``)
``_conditions(y, n, where)``       condition vectors of labels ``y`` for ``n`` rows
                                   (``Capabilities.conditional``)
``_warm_state(module)``            what ``warm_start`` carries into a fit: the networks' state
                                   without ``_fit_buffers`` (fit; the loop checks its shapes)
``_default_params()``              each parameter's default by name (a checkpoint written
                                   before a parameter existed resumes at its default)
=================================  ==============================================================

``*c`` is the condition of a conditional model (nothing for the others). The
class attribute ``_expected_failed_checks`` maps scikit-learn check names to the reason a
check cannot pass.

Rows are flat inside: image input ``(n, H, W)`` or ``(n, C, H, W)`` is validated, flattened
to ``(n, D)`` and its shape kept in ``input_shape_``; outputs in data space get it back.
"""

from __future__ import annotations

import inspect
import math
import numbers
import warnings
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted
from torch import Tensor, nn
from torch.distributions import Distribution

from aekit import persistence
from aekit.data import streaming, tables
from aekit.data.sources import Source
from aekit.distributions import LIKELIHOODS, get_likelihood
from aekit.estimator import inference, latent, validation
from aekit.estimator.capabilities import Capabilities
from aekit.exceptions import InputError, input_checks
from aekit.nn import (
    ACTIVATIONS,
    ARCHITECTURES,
    build_decoder,
    build_encoder,
    build_user_network,
    image_shape,
    mlp,
)
from aekit.runtime import PRECISIONS, compiled, local_device, resolve_device, seed
from aekit.training import (
    ON_NAN,
    SCHEDULES,
    FitContext,
    LossTerms,
    default_optimizer,
    distributed,
    fit_model,
    train_step,
)


class BaseAutoencoder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Shared estimator behaviour; see the module docstring for the hooks a model writes.

    The parameters below are common to every model (a subclass's docstring lists them
    again).

    Parameters
    ----------
    n_components : int, default=2
        Size of the code (latent dimensions).
    hidden_layer_sizes : tuple of int, default=(256, 128)
        Encoder hidden widths; the decoder mirrors them. For image input the conv
        networks use the last width for their dense layer.
    activation : {"relu", "leaky_relu", "elu", "gelu", "silu", "tanh", "sigmoid", "identity"}
        Hidden-layer nonlinearity; "identity" makes a linear autoencoder.
    likelihood : str, default="auto"
        p(x|z), one of :func:`aekit.distributions.list_likelihoods`: "gaussian" is MSE,
        "bernoulli" is binary cross-entropy, and so on. "auto" chooses at ``fit`` (the
        choice is ``likelihood_``): "mixed", one likelihood per column, for a DataFrame
        with a non-numeric column (text, categories) or a missing cell, or when
        ``columns`` declares kinds; otherwise "gaussian_learned", a Gaussian whose sigma
        (one per feature) is learned with the networks (Rybkin et al. 2021): with the
        features standardised (``scale="auto"``) it calibrates itself to how well each
        feature is reconstructed, so the reconstruction term never becomes too weak
        against the KL term, on data of any scale.
    likelihood_scale : float, default=1.0
        The fixed sigma of "gaussian", b of "laplace", the initial sigma of "gaussian_learned"
        (in standard deviations of each feature when the features are standardised).
    scale : {"auto", "standard", "none"}, default="auto"
        "standard": the encoder sees each feature standardised by the training rows' mean
        and standard deviation, and the decoder models the standardised feature; the
        likelihood maps it back (location m + s mu, scale s sigma), so every output
        (``inverse_transform``, ``sample``, ``reconstruct``) is in the data's own units and
        ``score_samples`` is the log-density of the data as given (it includes the
        log-Jacobian -sum log s). This is what makes one default work on data of any
        scale: with a fixed sigma on raw features the reconstruction term can be too weak
        against the KL and the posterior collapses. "auto" standardises for the real-line
        likelihoods ("gaussian", "gaussian_learned", "laplace") and leaves data in a fixed
        range (e.g. "bernoulli") as it is; "none" never standardises.
    architecture : {"auto", "mlp", "gated", "conv"}, default="auto"
        "auto" uses small conv nets for image-shaped input and MLPs for flat rows.
        "gated" builds MLPs whose hidden layers are gated linear units,
        ``(W x + b) * sigmoid(V x + c)`` (:class:`aekit.nn.GatedLinear`; ``activation``
        is then not used), the dense layers of the published VampPrior and Exemplar VAE
        likelihoods; image rows are flattened.
    columns : dict of str to {"numeric", "binary", "count", "categorical"}, optional
        With ``likelihood="mixed"`` (or "auto", which they make "mixed"): the kind of
        these columns, overriding what is inferred from the table (bool columns and
        numbers that are all 0 / 1 are binary, other numbers numeric, text and pandas
        categories categorical). "count" (a Poisson over 0, 1, 2, ...) is never inferred:
        declare it.
    encoder, decoder : nn.Module, callable, str or (str, dict), optional
        Your own networks instead of the built-in ones: a module (copied at each fit, so
        yours is never changed), a factory ``(input_shape, n_outputs) -> nn.Module``, or
        the name of a factory registered with :func:`aekit.register_network` (with its
        keyword arguments as ``(name, dict)``). The encoder gets rows in their own shape
        (``(B, C, H, W)`` for images; standardised when ``scale`` says so) and must give
        ``n_outputs`` values per row (``n_components``; twice that for a Gaussian
        posterior); the decoder gets codes ``(B, n_components)`` and must give the
        likelihood's parameters, ``n_features`` times its parameters per feature (one
        for "gaussian"), feature-major. A wrong width is refused with the width expected.
        Model files keep registered names; a module or an unregistered factory is given
        again to :func:`aekit.load`.
    max_iter : int, default=100
        Maximum number of epochs.
    batch_size : int, default=128
    learning_rate : float, default=1e-3
        Adam step size.
    learning_rate_schedule : {"constant", "cosine", "plateau"}, default="constant"
        How the step size changes from epoch to epoch (every optimizer's, in proportion).
        "cosine": falls along half a cosine from ``learning_rate`` at the first epoch
        towards 0 at ``max_iter`` (Loshchilov & Hutter 2017, without restarts), so set
        ``max_iter`` to the epochs you mean to train. "plateau": divided by 5 each time the
        watched loss (see ``early_stopping``) has not improved for ``n_iter_no_change``
        epochs, up to 3 times (to ``learning_rate / 125``); the next such stall stops
        training. Either records the step size of each epoch in ``history_["learning_rate"]``.
        A long likelihood run gains from it: see BENCHMARKS.md.
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
    flush_denormal : bool, default=True
        Flush subnormal floats to zero on the CPU while aekit trains and evaluates (the
        caller's floating-point mode is restored afterwards). CPUs compute on subnormal
        numbers tens of times slower than on normal ones, and training produces more of
        them as it goes on; False keeps IEEE gradual underflow.
    deterministic : bool, default=False
        On CUDA, train with deterministic kernels (:func:`aekit.runtime.deterministic_algorithms`):
        a fit repeats and resumes bit for bit; slower, and an operation without a
        deterministic kernel raises. No effect on the CPU, where fits are deterministic.
    warm_start : bool, default=False
        Start ``fit`` from the fitted networks rather than new ones (scikit-learn's
        meaning): every weight and buffer the networks hold carries over (a prior's, a
        codebook), except what a fit computes afresh from its data (the features'
        standardisation, a reference map). The optimizer, the learning-rate schedule and
        any warm-up start again, and ``history_`` and ``n_iter_`` count this fit's
        epochs: a fitted (or loaded) model trains on for ``max_iter`` more epochs at the
        ``learning_rate`` it has now. Networks of another shape (data of another width,
        a changed ``n_components``) are refused, except a part that a parameter adds
        (``hvae``'s pseudo-inputs), which starts as in a new fit; a fit that fails leaves
        the model as it was. Without a fitted model the fit starts afresh.
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "hidden_layer_sizes": ["array-like"],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "likelihood": [StrOptions(set(LIKELIHOODS.names()) | {"auto"})],
        "likelihood_scale": [Interval(Real, 0, None, closed="neither")],
        "scale": [StrOptions(set(validation.SCALES))],
        "architecture": [StrOptions(set(ARCHITECTURES))],
        "columns": [dict, None],
        "encoder": "no_validation",     # checked by _check_hyperparameters
        "decoder": "no_validation",
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "learning_rate_schedule": [StrOptions(set(SCHEDULES))],
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
        "flush_denormal": ["boolean"],
        "deterministic": ["boolean"],
        "warm_start": ["boolean"],
    }

    def __init__(self, n_components=2, *, hidden_layer_sizes=(256, 128), activation="relu",
                 likelihood="auto", likelihood_scale=1.0, scale="auto",
                 architecture="auto", columns=None, encoder=None, decoder=None, max_iter=100,
                 batch_size=128, learning_rate=1e-3, learning_rate_schedule="constant",
                 early_stopping=False,
                 validation_fraction=0.1, n_iter_no_change=10, tol=1e-4, random_state=None,
                 verbose=0, device="auto", precision="32", on_nan="restore", compile=False,
                 binarize="none", flush_denormal=True, deterministic=False,
                 warm_start=False):
        self.n_components = n_components
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.likelihood = likelihood
        self.likelihood_scale = likelihood_scale
        self.scale = scale
        self.architecture = architecture
        self.columns = columns
        self.encoder = encoder
        self.decoder = decoder
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_schedule = learning_rate_schedule
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
        self.flush_denormal = flush_denormal
        self.deterministic = deterministic
        self.warm_start = warm_start

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

    @classmethod
    def _default_params(cls) -> dict[str, Any]:
        """Each parameter's default by name: what a run recorded before the parameter
        existed (an older checkpoint) ran with."""
        return {name: p.default for name, p in inspect.signature(cls).parameters.items()
                if p.default is not inspect.Parameter.empty}

    # ------------------------------------------------------------ declarations

    #: what this model can do (see :class:`Capabilities`)
    capabilities: ClassVar[Capabilities] = Capabilities()

    #: why this model cannot train on streamed data (when ``capabilities.streaming`` is False)
    _streaming_unsupported: ClassVar[str] = ""

    #: parameters of the parent class that this model does not have.
    _excluded_params: ClassVar[tuple[str, ...]] = ()

    #: parameters added after the first model files of this class, each with the value that
    #: files without it were made with, where that is not its default now
    _params_before: ClassVar[dict[str, Any]] = {}

    #: fitted attributes beyond the shared ones that model files store (``columns_``: the
    #: column kinds and levels of a mixed table)
    _saved_attributes: ClassVar[tuple[str, ...]] = ("columns_",)

    #: buffers of the networks that each fit computes from its own data (by the last part
    #: of their name: the features' standardisation, a reference map), which
    #: ``warm_start`` does not carry over
    _fit_buffers: ClassVar[tuple[str, ...]] = ("data_loc", "data_scale")

    #: parts of the networks (by the last part of their name) that a parameter may add to
    #: a ``warm_start`` from a model without them; they start as in a new fit
    _warm_new_parts: ClassVar[tuple[str, ...]] = ()

    def _warm_state(self, module: nn.Module | None = None) -> dict[str, Tensor]:
        """What ``warm_start`` carries into the next fit: the state of ``module`` (default:
        the fitted networks) without :attr:`_fit_buffers`."""
        module = self.module_ if module is None else module
        return {k: v for k, v in module.state_dict().items()
                if k.rsplit(".", 1)[-1] not in self._fit_buffers}

    #: why this model cannot model mixed tables ("" when it can)
    _mixed_unsupported: ClassVar[str] = ""

    #: scikit-learn estimator checks this model cannot pass, with the reason.
    _expected_failed_checks: ClassVar[dict[str, str]] = {}

    # ------------------------------------------------------------------ hooks

    @property
    def _encoder_outputs(self) -> int:
        return self.n_components

    #: what the encoder's outputs are, for the message when a user's encoder gives another
    #: number of them
    _encoder_outputs_meaning: ClassVar[str] = "the code, n_components values"

    #: why this model cannot take users' networks ("" when it can)
    _own_networks_unsupported: ClassVar[str] = ""

    def _build(self, input_shape: tuple[int, ...]) -> nn.Module:
        """Encoder, decoder and likelihood for rows of ``input_shape``."""
        n_features = math.prod(input_shape)
        likelihood = self._make_likelihood(n_features)
        hidden = tuple(self.hidden_layer_sizes)
        n_out, n_params, n_outputs = (self._encoder_outputs, likelihood.n_params,
                                      likelihood.n_outputs)
        # a mixed table's encoder sees one-hot levels and missingness indicators
        enc_shape = input_shape if likelihood.n_inputs == n_features else (likelihood.n_inputs,)
        if self.encoder is None:
            encoder = build_encoder(enc_shape, hidden, n_out, self.activation,
                                    self.architecture)
        else:
            encoder = build_user_network(
                self.encoder, image_shape(enc_shape) or (math.prod(enc_shape),), n_out,
                f"encoder: {self._encoder_outputs_meaning} ({n_out})")
        if self.decoder is None and n_outputs != n_features * n_params:
            decoder = mlp([self.n_components, *reversed(hidden), n_outputs], self.activation,
                          gated=self.architecture == "gated")
        elif self.decoder is None:
            decoder = build_decoder(input_shape, hidden, self.n_components, n_params,
                                    self.activation, self.architecture)
        else:
            decoder = build_user_network(
                self.decoder, (self.n_components,), n_outputs,
                f"decoder: the parameters of likelihood={self._likelihood_name()!r}"
                + (f", {n_features} features x {n_params} per feature, feature-major"
                   if n_outputs == n_features * n_params else ""))
        return nn.ModuleDict({"encoder": encoder, "decoder": decoder, "likelihood": likelihood})

    def _likelihood_name(self) -> str:
        """The likelihood ``fit`` chose (``likelihood_``); for networks built outside a
        fit, the parameter, with "auto" read as for numeric rows."""
        return self.__dict__.get("likelihood_") or validation.resolve_likelihood(self, None)

    def _make_likelihood(self, n_features: int) -> nn.Module:
        """The likelihood p(x|z), standardising the features as ``scale`` says, with the
        training rows' moments when ``fit`` is building it."""
        name = self._likelihood_name()
        likelihood = get_likelihood(name, n_features, self.likelihood_scale,
                                    standardize=validation.standardizes(name, self.scale),
                                    columns=self.__dict__.get("columns_"))
        moments = self.__dict__.get("_fit_standardization")
        if likelihood.standardizes and moments is not None:
            likelihood.set_standardization(*moments)
        return likelihood

    def _standardize(self, x: Tensor) -> Tensor:
        """The rows as the networks see them: standardised features when ``scale`` says so
        (every model passes its input through this before an encoder or classifier)."""
        return self.module_.likelihood.standardize(x)

    def _fit_targets(self, y: Any) -> tuple[dict[str, Any], Any]:
        """Unsupervised models ignore ``y``: no fitted attributes, no targets."""
        return {}, None

    def _labels_tensor(self, targets: Any, n: int, device: torch.device) -> Tensor | None:
        """The loop's per-row targets on the device; None for unsupervised models."""
        return None

    def _pretrain(self, x: Tensor, y: Tensor | None, ctx: FitContext) -> None:
        """Called once after ``_build`` and before the training loop."""

    def _loss(self, x: Tensor, y: Tensor | None, ctx: FitContext) -> LossTerms:
        raise NotImplementedError

    def _configure_optimizers(self) -> Any:
        """One Adam over every parameter; models with several return a list."""
        return default_optimizer(self.module_.parameters(), self.learning_rate)

    def _train_step(self, x: Tensor, y: Tensor | None, optimizer: Any,
                    ctx: FitContext) -> dict[str, Tensor]:
        """One optimisation step; a non-finite ``"loss"`` must come with no update
        applied (the loop then acts on ``on_nan``)."""
        return train_step(x, y, optimizer, ctx)

    def _on_epoch_end(self, epoch: int, x: Tensor) -> dict[str, Any]:
        """Extra numbers (floats or lists of floats) for this epoch's ``history_`` row;
        ``x`` are the training rows (a fixed binarization with ``binarize="dynamic"``).
        By default, for models with a Gaussian posterior and prior: ``active_units`` and
        ``kl_per_dim`` on up to 2048 rows spread over the training data."""
        return latent.summary(self, latent.spread_rows(x))

    def _after_fit(self, x: Tensor) -> None:
        """Called once after training with the training rows (on the device; a fixed
        binarization with ``binarize="dynamic"``)."""

    def _encode(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _decode(self, z: Tensor) -> Distribution:
        """p(x|z) for codes ``z`` of shape ``(..., k)``; event shape ``(D,)``."""
        return self.module_.likelihood(self.module_.decoder(z))

    def _log_likelihood(self, x: Tensor, eps: Tensor) -> Tensor:
        raise NotImplementedError

    def _elbo(self, x: Tensor, eps: Tensor) -> Tensor:
        raise NotImplementedError

    def _n_eval_samples(self) -> int:
        """How many noise draws ``score_samples`` uses per row."""
        return 1

    def _sample_latent(self, n_samples: int, generator: torch.Generator) -> Tensor:
        raise NotImplementedError

    def _posterior(self, x: Tensor, *c: Tensor) -> Distribution:
        raise NotImplementedError(f"{type(self).__name__} has no posterior q(z|x)")

    def _prior(self) -> Distribution:
        raise NotImplementedError(f"{type(self).__name__} has no prior p(z)")

    def _log_weights(self, x: Tensor, *c_and_eps: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no importance weights")

    def _conditions(self, y: Any, n: int, where: str) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} is not conditional")

    def _check_hyperparameters(self) -> None:
        """Checks of parameter combinations that ``_parameter_constraints`` cannot say."""
        validation.check_hidden_layer_sizes(self.hidden_layer_sizes)
        validation.check_networks(self)
        if self.likelihood != "auto":       # "auto" is checked once fit has chosen
            validation.check_likelihood(self, self.likelihood)

    # ---------------------------------------------------------------- fitting

    def fit(self, X: Any, y: Any = None, *, checkpoint_dir: str | None = None,
            checkpoint_every: int = 1, resume: bool = False, overwrite: bool = False,
            memory_budget: int | str | None = None) -> BaseAutoencoder:
        """Train on ``X`` (rows, or images of shape (n, H, W) / (n, C, H, W)).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or image-shaped, or data to stream
            A :class:`~aekit.data.sources.Source`, a path (``.npy``, ``.parquet`` file or folder,
            a folder of images) or a ``np.memmap``: read whole when it fits in
            ``memory_budget``, streamed from disk otherwise (see :mod:`aekit.data.streaming`).
        y : ignored for unsupervised models.
        checkpoint_dir : str, optional
            Folder for ``checkpoint.safetensors``, written every ``checkpoint_every``
            epochs and at the end (atomically; safetensors + JSON, no pickle).
        checkpoint_every : int, default=1
        resume : bool, default=False
            Continue from the checkpoint in ``checkpoint_dir`` (start afresh when there is
            none). On CPU the result is bit-identical to an uninterrupted run. A checkpoint
            of another model, other parameters or other data is refused.
        overwrite : bool, default=False
            Start afresh in a ``checkpoint_dir`` that holds another run's checkpoint,
            replacing it (without it such a folder is refused, so no run is lost by
            mistake). A folder another process is writing to is always refused.
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
            raise InputError(f"checkpoint_every must be a positive integer; "
                             f"got {checkpoint_every!r}")
        if resume and checkpoint_dir is None:
            raise InputError("resume=True needs the checkpoint_dir to resume from")
        budget = streaming.memory_budget(memory_budget)
        # warm_start: the fitted state, to start from and to come back to if this fit fails
        previous = self._fitted_state() if self.warm_start else {}
        warm = self._warm_state() if "module_" in previous else None
        self._clear_fitted()            # a refit starts clean; a failed fit leaves it unfitted
        try:
            data = streaming.resolve(X, budget)
            self.likelihood_ = validation.resolve_likelihood(self, data)
            validation.check_likelihood(self, self.likelihood_)
            fingerprint = None
            standardize = validation.standardizes(self.likelihood_, self.scale)
            if isinstance(data, Source):
                moments = validation.FeatureMoments() if standardize else None
                fingerprint = validation.validate_source(self, data, checkpoint_dir is not None,
                                                         moments)
                if standardize:
                    self._fit_standardization = moments.standardization()
            else:
                data = self._validate_X(data, reset=True)
                self._check_support(data)
                validation.check_binarize(self.binarize, data)
                if standardize:
                    self._fit_standardization = validation.feature_standardization(data)
            with input_checks():
                fitted, targets = self._fit_targets(y)
            device = local_device(resolve_device(self.device))
            world = distributed.setup(device)
            self._check_distributed(world)
            for attr, value in fitted.items():
                setattr(self, attr, value)
            validation.check_network_size(self, self.input_shape_)
            fit_model(self, data, targets, device=device, world=world,
                      seed=seed(self.random_state), budget=budget, fingerprint=fingerprint,
                      checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every,
                      resume=resume, overwrite=overwrite, warm_state=warm)
        except BaseException:
            self._clear_fitted()
            for attr, value in previous.items():     # a failed warm start keeps the model
                setattr(self, attr, value)
            raise
        finally:
            self.__dict__.pop("_fit_standardization", None)   # it lives in module_ now
        if self.history_.get("active_units", [None])[-1] == 0:
            warnings.warn(latent.collapse_message(self), ConvergenceWarning, stacklevel=2)
        return self

    def _fitted_state(self) -> dict[str, Any]:
        """The fitted attributes by name (``module_`` among them when fitted)."""
        return {a: v for a, v in vars(self).items() if a.endswith("_") and not a.startswith("_")}

    def _clear_fitted(self) -> None:
        for attr in self._fitted_state():
            delattr(self, attr)
        self.__dict__.pop("_compiled_log_likelihood", None)

    def _check_distributed(self, world: distributed.World) -> None:
        if world.size == 1:
            return
        if type(self)._train_step is not BaseAutoencoder._train_step:
            raise InputError(f"{type(self).__name__} trains with its own step (several "
                             "optimizers) and does not support DDP yet; run it in one process")
        if self.batch_size < world.size:
            raise InputError(f"batch_size={self.batch_size} is the global batch and must be at "
                             f"least the number of processes ({world.size})")

    # ------------------------------------------------------------- input checks

    def _validate_X(self, X: Any, *, reset: bool) -> Any:
        """float32 rows ``(n, D)``, or after fitting a checked stream for data to stream
        (see :func:`aekit.estimator.validation.validate_rows`); a mixed table encoded as
        numbers with NaN for missing cells (:func:`aekit.estimator.validation.validate_table`)."""
        if self.likelihood_ == "mixed":
            return validation.validate_table(self, X, reset=reset)
        return validation.validate_rows(self, X, reset=reset)

    def _check_support(self, X: Any) -> None:
        validation.check_support(self.likelihood_, X)

    # ---------------------------------------------------------------- inference

    def _device(self) -> torch.device:
        return next(self.module_.parameters()).device

    def _map_rows(self, X: Any, fn: Any, draws: int = 1,
                  others: tuple[np.ndarray, ...] = (), *, same_shape: bool = False
                  ) -> np.ndarray:
        """``fn(x, *others)`` over chunks of rows in inference mode, as numpy (see
        :func:`aekit.estimator.inference.map_rows`)."""
        return inference.map_rows(self, X, fn, draws, others, same_shape=same_shape)

    def _eval_noise(self, n_draws: int | None = None) -> Tensor:
        """Common random numbers ``(K, k)``: the same draws for every row, so a row's score
        does not depend on which other rows are scored with it."""
        k = n_draws if n_draws is not None else self._n_eval_samples()
        return inference.eval_noise(self.random_state, k, self.n_components, self._device())

    def transform(self, X: Any) -> np.ndarray:
        """Codes of ``X``: the posterior mean (or the deterministic code), ``(n, k)``."""
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        return self._map_rows(X, self._encode)

    def inverse_transform(self, X: Any) -> np.ndarray:
        """Decoder means for codes ``X`` of shape ``(n, k)``, in the input's row shape."""
        check_is_fitted(self)
        with input_checks():
            Z = check_array(X, dtype=np.float32)
        if Z.shape[1] != self.n_components:
            raise InputError(f"codes have {Z.shape[1]} columns, but {type(self).__name__} "
                             f"has n_components={self.n_components}")
        lik = self.module_.likelihood
        X_hat = self._map_rows(Z, lambda z: lik.mean(self._decode(z)))
        return self._as_data(X_hat)

    def _as_data(self, rows: np.ndarray, like: Any = None) -> Any:
        """Rows ``(n, D)`` as the data came: in the input's row shape, or for a mixed
        table in its own types (a DataFrame when fitted on one, else an object array)."""
        if "columns_" in vars(self):
            return tables.decode(rows, [tables.Column.from_json(c) for c in self.columns_],
                                 like, as_frame="feature_names_in_" in vars(self))
        return rows.reshape(len(rows), *self.input_shape_)

    def impute(self, X: Any, n_draws: int | None = None, random_state: Any = None) -> Any:
        """``X`` with every missing cell filled (``likelihood="mixed"``); observed cells are
        kept as they are, in the table's own types (a DataFrame for a DataFrame).

        Without ``n_draws``: the decoder's mean at the code of the row's observed part (the
        posterior mean for a VAE) for numbers, the more probable value of binary columns
        and the most probable level of categorical ones. With ``n_draws=m``: a list of m
        multiple imputations, each hole drawn from the model's posterior predictive,
        z ~ q(z | x_obs) (the code itself for a deterministic model) then x_mis ~ p(x_mis | z):
        plain posterior-predictive draws, not MIWAE's importance-weighted resampling, so
        they inherit the error of q as an approximation of p(z | x_obs). ``random_state``
        seeds the draws.
        """
        check_is_fitted(self)
        if "columns_" not in vars(self):
            raise InputError(f"impute needs a model of likelihood='mixed' (which trains on rows "
                             f"with holes); this {type(self).__name__} has likelihood="
                             f"{self.likelihood_!r}")
        rows = self._validate_X(X, reset=False)
        lik = self.module_.likelihood

        def fill(x: Tensor) -> Tensor:
            mean = lik.mean(self._decode(self._encode(x)))
            return torch.where(torch.isnan(x), mean, x)

        def draw(x: Tensor) -> Tensor:
            z = self._posterior(x).sample() if self.capabilities.posterior else self._encode(x)
            return torch.where(torch.isnan(x), self._decode(z).sample(), x)

        if n_draws is None:
            return self._filled(X, self._map_rows(rows, fill))
        if not isinstance(n_draws, numbers.Integral) or n_draws < 1:
            raise InputError(f"n_draws must be a positive integer; got {n_draws!r}")
        device = self._device()
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed(random_state))
            return [self._filled(X, self._map_rows(rows, draw)) for _ in range(n_draws)]

    def _filled(self, X: Any, rows: np.ndarray) -> Any:
        """``X`` with its holes taken from the model's ``rows`` (observed cells as given)."""
        filled = self._as_data(rows, like=X)
        if tables.is_frame(X) and not hasattr(X, "iloc"):
            return filled                   # polars: a pandas DataFrame of the decoded rows
        return tables.fill_holes(X, filled)

    def reconstruct(self, X: Any) -> np.ndarray:
        """``inverse_transform(transform(X))``: decoder means at the codes of ``X``."""
        return self.inverse_transform(self.transform(X))

    def sample(self, n_samples: int = 1, random_state: Any = None) -> np.ndarray:
        """Decoder means of ``n_samples`` draws from the prior, in the input's row shape.

        With ``likelihood="mixed"`` the rows are drawn from p(x | z) instead (synthetic
        rows: every column its own draw, categories drawn by their probabilities), in the
        table's own types. ``random_state`` seeds the draws (a fresh seed when None).
        """
        check_is_fitted(self)
        n = inference.check_n_samples(n_samples)
        state = seed(random_state)
        g = torch.Generator().manual_seed(state)
        self.module_.eval()
        with torch.inference_mode():
            z = self._sample_latent(n, g).float().cpu().numpy()                # (n, k)
        lik = self.module_.likelihood
        if "columns_" in vars(self):
            device = self._device()
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(state)
                x = self._map_rows(z, lambda codes: self._decode(codes).sample())
            return self._as_data(x)
        # decoded in chunks: each code becomes a full row of the likelihood's parameters
        x = self._map_rows(z, lambda codes: lik.mean(self._decode(codes)))     # (n, D)
        return self._as_data(x)

    def score_samples(self, X: Any) -> np.ndarray:
        """log p(x) for each row, in nats (see the model's docstring for how it is estimated).

        For a discrete likelihood, bits per dimension are ``-score_samples(X) / (D ln 2)``
        (:func:`aekit.evaluation.bits_per_dim` says when they mean something).
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        self._check_support(X)
        eps = self._eval_noise()
        log_likelihood = self._log_likelihood
        if self.compile:
            log_likelihood = self.__dict__.setdefault(
                "_compiled_log_likelihood", compiled(self._log_likelihood, "score_samples"))
        # compiled: every chunk of one shape, so the function compiles once
        return self._map_rows(X, lambda x: log_likelihood(x, eps), draws=len(eps),
                              same_shape=self.compile)

    def score(self, X: Any, y: Any = None) -> float:
        """Mean log-likelihood of the rows of ``X`` in nats (larger is better)."""
        return float(np.mean(self.score_samples(X)))

    def elbo(self, X: Any) -> np.ndarray:
        """The evidence lower bound on log p(x) for each row, in nats."""
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        self._check_support(X)
        eps = self._eval_noise()
        return self._map_rows(X, lambda x: self._elbo(x, eps), draws=len(eps))

    def save(self, path: str) -> None:
        """Write the fitted model to one safetensors file (weights + JSON metadata).

        Read it back with :func:`aekit.load`; loading never unpickles anything.
        """
        persistence.save_model(self, path)

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
        state.pop("_compiled_log_likelihood", None)     # a compiled function: rebuilt on use
        return state
