"""The stacked autoencoder with greedy layer-wise pretraining.

Bengio, Lamblin, Popovici & Larochelle, "Greedy Layer-Wise Training of Deep Networks",
NeurIPS 2006 (published 2007); Hinton & Salakhutdinov, "Reducing the Dimensionality of
Data with Neural Networks", Science 2006 (neither on arXiv). Each encoder layer is first
trained as a one-layer autoencoder on the codes of the layer below; the deep encoder and
decoder start from those weights and are then fine-tuned end to end by the usual loss,
the decoder's negative log-likelihood.
"""

from __future__ import annotations

import math
from numbers import Integral

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from torch import Tensor, nn

from aekit._registry import register
from aekit.exceptions import InputError
from aekit.models.ae import AE
from aekit.nn import ACTIVATIONS
from aekit.runtime import seed
from aekit.training import FitContext


class _LayerAE(AE):
    """One layer of a :class:`StackedAE` as a shallow autoencoder (not registered).

    Encoder ``Linear(D, k)`` then ``encoder_activation``; decoder ``Linear(k, D * P)`` then
    ``decoder_activation``: exactly one encoder layer and its mirror in the deep decoder,
    so the fitted weights can be copied across. It trains through the one training loop.
    ``hidden_layer_sizes`` is not used.
    """

    _parameter_constraints = {
        **AE._parameter_constraints,
        "encoder_activation": [StrOptions(set(ACTIVATIONS))],
        "decoder_activation": [StrOptions(set(ACTIVATIONS))],
    }

    def __init__(self, n_components=2, *, encoder_activation="relu",
                 decoder_activation="identity", **kwargs):
        super().__init__(n_components, **kwargs)
        self.encoder_activation = encoder_activation
        self.decoder_activation = decoder_activation

    def _build(self, input_shape: tuple[int, ...]) -> nn.Module:
        n_in = math.prod(input_shape)
        likelihood = self._make_likelihood(n_in)
        module = nn.ModuleDict({
            "encoder": nn.Sequential(nn.Linear(n_in, self.n_components),
                                     ACTIVATIONS[self.encoder_activation]()),
            "decoder": nn.Sequential(nn.Linear(self.n_components, n_in * likelihood.n_params),
                                     ACTIVATIONS[self.decoder_activation]()),
            "likelihood": likelihood,
        })
        module.register_buffer("code_loc", torch.zeros(self.n_components))
        module.register_buffer("code_scale_tril", torch.eye(self.n_components))
        return module


@register("stacked_ae")
class StackedAE(AE):
    """Deep autoencoder pretrained greedily, one layer at a time, then fine-tuned.

    With ``hidden_layer_sizes=(h1, ..., hL)`` the encoder is ``D -> h1 -> ... -> hL -> k``.
    Layer l is pretrained as a shallow autoencoder on the codes of layer l - 1 (the data
    for l = 1): it reconstructs the data with ``likelihood``, and the codes of the layer
    below with a Gaussian (MSE) for inner layers, each for ``pretrain_max_iter`` epochs.
    Its encoder weights start the deep encoder's layer l, its decoder weights the deep
    decoder's mirror layer; ``max_iter`` epochs of end-to-end training follow.

    Pretraining uses every row given to ``fit``, including those that ``early_stopping``
    later holds out. Networks are always MLPs: image input is flattened, and
    ``architecture="conv"`` is refused. ``score_samples`` is, as for :class:`~aekit.AE`,
    the decoder log-likelihood at the code, log p(x | z = f(x)), not a density of x.

    Parameters
    ----------
    n_components : int, default=2
    pretrain_max_iter : int, default=20
        Epochs of pretraining per layer; 0 skips pretraining (a plain deep AE).
    **kwargs
        The parameters shared by every model; see :class:`aekit.estimator.BaseAutoencoder`.
        ``batch_size``, ``learning_rate``, ``learning_rate_schedule`` (over each layer's
        ``pretrain_max_iter`` epochs), ``tol``, ``n_iter_no_change``, ``device`` and
        ``precision`` apply to pretraining too.

    Attributes
    ----------
    module_ : torch.nn.ModuleDict
        ``encoder``, ``decoder``, ``likelihood`` and the buffers ``code_loc`` and
        ``code_scale_tril`` of the Gaussian fitted to the training codes.
    history_ : dict of str to list of float
        Fine-tuning: per-epoch ``loss``, ``recon``, ``time`` (and ``val_*`` with early
        stopping). Pretraining: ``pretrain_layer1_loss``, ..., one list of per-epoch losses
        for each of the ``len(hidden_layer_sizes) + 1`` layers (absent when
        ``pretrain_max_iter=0``).
    n_iter_ : int
        Fine-tuning epochs run.
    input_shape_ : tuple of int

    Examples
    --------
    >>> import aekit
    >>> from aekit.models.stacked import StackedAE
    >>> X, _ = aekit.datasets.load("digits")
    >>> sae = StackedAE(hidden_layer_sizes=(32,), pretrain_max_iter=2, max_iter=2,
    ...                 random_state=0).fit(X)
    >>> sorted(k for k in sae.history_ if k.startswith("pretrain"))
    ['pretrain_layer1_loss', 'pretrain_layer2_loss']
    """

    _parameter_constraints = {
        **AE._parameter_constraints,
        "pretrain_max_iter": [Interval(Integral, 0, None, closed="left")],
    }

    def __init__(self, n_components=2, *, pretrain_max_iter=20, **kwargs):
        super().__init__(n_components, **kwargs)
        self.pretrain_max_iter = pretrain_max_iter

    def _build(self, input_shape: tuple[int, ...]) -> nn.Module:
        if self.architecture in ("conv", "gated"):
            raise InputError("StackedAE pretrains dense layers one at a time, so it only "
                             f"builds plain MLPs; got architecture={self.architecture!r}. "
                             "Use architecture='mlp' or 'auto' (image input is then "
                             "flattened)")
        return super()._build((math.prod(input_shape),))

    capabilities = AE.capabilities.but(streaming=False)
    _mixed_unsupported = "its layer-wise pretraining reconstructs plain numeric rows"
    _own_networks_unsupported = ("greedy pretraining builds its dense layers one at a time; "
                                 "use AE with your own networks")
    _streaming_unsupported = "greedy layer-wise pretraining holds every layer's codes in memory"

    def _pretrain(self, x: Tensor, y: Tensor | None, ctx: FitContext) -> None:
        if self.pretrain_max_iter == 0 or ctx.warm_start:     # warm: the fitted weights
            return
        enc = [m for m in self.module_.encoder if isinstance(m, nn.Linear)]
        dec = [m for m in self.module_.decoder if isinstance(m, nn.Linear)][::-1]
        # children of the fit's seed: reproducible, and independent of the fit's own streams
        seeds = np.random.SeedSequence(seed(self.random_state)).spawn(len(enc))
        codes = x.float().cpu().numpy()                                   # (n, D)
        for i, (enc_layer, dec_layer) in enumerate(zip(enc, dec)):
            first, last = i == 0, i == len(enc) - 1
            layer = _LayerAE(
                n_components=enc_layer.out_features, hidden_layer_sizes=(1,),
                # the code layer is linear, and the bottom decoder layer outputs raw
                # likelihood parameters, exactly as in the deep networks
                encoder_activation="identity" if last else self.activation,
                decoder_activation="identity" if first else self.activation,
                likelihood=self.likelihood_ if first else "gaussian",
                likelihood_scale=self.likelihood_scale if first else 1.0,
                # the first layer standardises as the deep network does; codes go as they are
                scale=self.scale if first else "none",
                max_iter=self.pretrain_max_iter, batch_size=self.batch_size,
                learning_rate=self.learning_rate,
                learning_rate_schedule=self.learning_rate_schedule, tol=self.tol,
                n_iter_no_change=self.n_iter_no_change, verbose=self.verbose,
                device=str(x.device), precision=self.precision, on_nan=self.on_nan,
                random_state=int(seeds[i].generate_state(1)[0] >> 1),
            ).fit(codes)
            with torch.no_grad():
                enc_layer.load_state_dict(layer.module_.encoder[0].state_dict())
                dec_layer.load_state_dict(layer.module_.decoder[0].state_dict())
                if first:   # e.g. the learned sigma of "gaussian_learned"
                    self.module_.likelihood.load_state_dict(layer.module_.likelihood.state_dict())
            ctx.extra_history[f"pretrain_layer{i + 1}_loss"] = layer.history_["loss"]
            codes = layer.transform(codes)                                # (n, width)

