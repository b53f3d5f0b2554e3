"""scikit-learn's estimator checks on every registered model."""

from sklearn.utils.estimator_checks import parametrize_with_checks

import aekit


def _instances():
    return [aekit.get_model(name, hidden_layer_sizes=(16,), max_iter=10, random_state=0)
            for name in aekit.list_models()]


def _expected_failures(estimator):
    """Each model lists the checks it cannot pass, with the reason, in the model file."""
    return type(estimator)._expected_failed_checks


@parametrize_with_checks(_instances(), expected_failed_checks=_expected_failures)
def test_sklearn_compatible(estimator, check):
    check(estimator)
