"""Imputation as a scikit-learn transformer: missing cells filled by an aekit model of the
table (``likelihood="mixed"``), usable in a ``Pipeline`` before any estimator."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.utils.validation import check_is_fitted

from aekit.exceptions import InputError
from aekit.models import VAE


class Imputer(TransformerMixin, BaseEstimator):
    """Fill the missing cells of a table with an autoencoder's model of it.

    ``fit`` trains a clone of ``model`` on the rows with their holes (the likelihood of the
    observed cells); ``transform`` returns the rows with every hole filled
    (:meth:`aekit.estimator.BaseAutoencoder.impute`: the decoder's mean at the code of the
    row's observed part, the most probable level of a category) and observed cells as given.

    Parameters
    ----------
    model : aekit model with ``likelihood="mixed"``, default=None
        None means ``aekit.VAE(likelihood="mixed", random_state=random_state)``.
    random_state : int or None, default=None
        Seeds the default model (a given model keeps its own).

    Examples
    --------
    >>> import numpy as np, aekit
    >>> X = np.random.default_rng(0).normal(size=(200, 3))
    >>> X[::10, 1] = np.nan
    >>> filled = aekit.Imputer(aekit.VAE(likelihood="mixed", max_iter=5)).fit_transform(X)
    >>> bool(np.isnan(filled.astype(float)).any())
    False
    """

    def __init__(self, model: Any = None, random_state: Any = None) -> None:
        self.model = model
        self.random_state = random_state

    def fit(self, X: Any, y: Any = None) -> Imputer:
        if self.model is None:
            model = VAE(likelihood="mixed", random_state=self.random_state)
        else:
            model = clone(self.model)
        if model.likelihood == "auto":          # imputing means modelling the holes
            model.set_params(likelihood="mixed")
        if model.likelihood != "mixed":
            raise InputError(f"Imputer needs a model of likelihood='mixed' (which trains on "
                             f"rows with holes); got likelihood={model.likelihood!r}")
        self.model_ = model.fit(X)
        self.n_features_in_ = self.model_.n_features_in_
        if "feature_names_in_" in vars(self.model_):
            self.feature_names_in_ = self.model_.feature_names_in_
        return self

    def transform(self, X: Any) -> Any:
        check_is_fitted(self)
        return self.model_.impute(X)

    def get_feature_names_out(self, input_features: Any = None) -> Any:
        check_is_fitted(self)
        return np.asarray([c["name"] for c in self.model_.columns_], dtype=object)
