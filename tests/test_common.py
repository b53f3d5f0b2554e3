"""scikit-learn's estimator checks on every registered model."""

from sklearn.utils.estimator_checks import parametrize_with_checks

import aekit

#: checks that cannot pass by design, with the reason.
EXPECTED_FAILURES: dict[str, str] = {}


def _instances():
    return [aekit.get_model(name, hidden_layer_sizes=(16,), max_iter=10, random_state=0)
            for name in aekit.list_models()]


@parametrize_with_checks(_instances(), expected_failed_checks=lambda est: EXPECTED_FAILURES)
def test_sklearn_compatible(estimator, check):
    check(estimator)
