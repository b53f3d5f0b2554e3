"""The neighbour-preserving autoencoder (models/neighbor_ae.py) and the neighbour tables it
trains on (data/neighbors.py)."""

import math

import numpy as np
import pytest
import torch

import aekit
from aekit.data.neighbors import neighbor_table
from aekit.evaluation.array_metrics import knn_accuracy
from aekit.exceptions import InputError
from aekit.models.neighbor_ae import NeighborAE, neighbor_embedding_loss
from aekit.training import FitContext

from .conftest import SMALL


# ------------------------------------------------------------------ the loss, by hand
def test_the_loss_on_a_tiny_batch_matches_a_hand_computation():
    # two anchors on a line at 0 and 3, their neighbours at 1 and 3.5
    z = torch.tensor([[0.0], [3.0]])
    z_pos = torch.tensor([[1.0], [3.5]])
    q = lambda a, b: 1.0 / (1.0 + (a - b) ** 2)  # noqa: E731
    # anchor 0: candidates are both neighbours (1, 3.5) and the other anchor (3)
    l0 = -math.log(q(0, 1)) + math.log(q(0, 1) + q(0, 3.5) + q(0, 3))
    # anchor 1: neighbours 1 and 3.5 (its own), the other anchor 0
    l1 = -math.log(q(3, 3.5)) + math.log(q(3, 1) + q(3, 3.5) + q(3, 0))
    loss = neighbor_embedding_loss(z, z_pos)
    assert loss.shape == (2,)
    np.testing.assert_allclose(loss.numpy(), [l0, l1], rtol=1e-6)


def test_the_loss_falls_as_neighbours_come_together_and_others_move_apart():
    z = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    near = neighbor_embedding_loss(z, z + 0.1).mean()
    far = neighbor_embedding_loss(z, z + 5.0).mean()
    crowded = neighbor_embedding_loss(z * 0.01, z * 0.01 + 0.1).mean()
    assert near < far and near < crowded


def test_the_loss_has_finite_gradients_when_codes_coincide():
    z = torch.zeros(4, 2, requires_grad=True)
    neighbor_embedding_loss(z, torch.zeros(4, 2)).sum().backward()
    assert torch.isfinite(z.grad).all()


# ------------------------------------------------------------------ neighbour tables
def test_the_exact_table_lists_the_nearest_other_rows_nearest_first():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5)).astype(np.float32)
    table, queries = neighbor_table(X, 4, queries=X[:3] + 0.01, method="exact")
    d = ((X[:, None] - X[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    np.testing.assert_array_equal(table, np.argsort(d, axis=1)[:, :4])
    dq = ((X[:3, None] + 0.01 - X[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(queries, np.argsort(dq, axis=1)[:, :4])


def test_a_duplicate_row_is_a_neighbour_but_a_row_never_its_own():
    X = np.array([[0.0], [0.0], [5.0], [9.0]], dtype=np.float32)
    table, _ = neighbor_table(X, 2, method="exact")
    assert all(i not in row for i, row in enumerate(table))
    assert table[0, 0] == 1 and table[1, 0] == 0


def test_the_approximate_table_agrees_with_the_exact_one():
    pytest.importorskip("pynndescent")
    X, _ = aekit.datasets.load("digits")
    exact, _ = neighbor_table(X[:400], 10, method="exact")
    approx, _ = neighbor_table(X[:400], 10, method="nndescent", random_state=0)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, approx)])
    assert recall > 0.9
    assert all(i not in row for i, row in enumerate(approx))


def test_the_approximate_table_without_its_package_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pynndescent", None)      # import fails
    with pytest.raises(InputError, match=r"aekit\[neighbors\]"):
        neighbor_table(np.zeros((5, 2), np.float32), 2, method="nndescent")


@pytest.mark.parametrize("k, method, match", [(10, "exact", "at least n_neighbors \\+ 1"),
                                              (2, "kd", "knn_method")])
def test_bad_tables_are_refused(k, method, match):
    with pytest.raises(InputError, match=match):
        neighbor_table(np.zeros((5, 2), np.float32), k, method=method)


# ------------------------------------------------------------------ the model
@pytest.fixture(scope="module")
def fitted(digits):
    X, _ = digits
    return NeighborAE(**{**SMALL, "max_iter": 8}).fit(X[:800])


def test_it_keeps_the_whole_contract(fitted, digits_test, tmp_path):
    X_test, _ = digits_test
    codes = fitted.transform(X_test[:50])                     # new rows: the encoder
    assert codes.shape == (50, 2) and np.isfinite(codes).all()
    assert fitted.inverse_transform(codes).shape == (50, 64)
    draws = fitted.sample(30, random_state=0)
    assert draws.shape == (30, 64) and np.isfinite(draws).all()
    np.testing.assert_array_equal(draws, fitted.sample(30, random_state=0))
    assert np.isfinite(fitted.score_samples(X_test[:10])).all()
    assert set(fitted.history_) >= {"loss", "recon", "neighbors"}
    path = tmp_path / "nae.safetensors"
    fitted.save(path)
    loaded = aekit.load(path)
    np.testing.assert_array_equal(loaded.transform(X_test[:50]), codes)
    np.testing.assert_array_equal(loaded.sample(30, random_state=0), draws)
    assert loaded.get_params()["n_neighbors"] == 15


def test_samples_come_from_a_kernel_density_over_training_codes(fitted, digits):
    X, _ = digits
    points = fitted.module_.code_points.numpy()
    np.testing.assert_allclose(points[:3], fitted.transform(X[:800][[0, 0, 1]]), rtol=1e-5,
                               atol=1e-5)
    assert (fitted.module_.code_bandwidth.numpy() > 0).all()
    draws = fitted._sample_latent(2000, torch.Generator().manual_seed(0)).numpy()
    # each draw lies near a kept code, within a few bandwidths
    nearest = np.sqrt(((draws[:, None] - points[None]) ** 2).sum(-1)).min(1)
    assert np.quantile(nearest, 0.99) < 5 * fitted.module_.code_bandwidth.norm().item()


def test_a_fit_repeats_with_its_random_state(fitted, digits):
    X, _ = digits
    again = NeighborAE(**{**SMALL, "max_iter": 8}).fit(X[:800])
    np.testing.assert_array_equal(again.transform(X[:20]), fitted.transform(X[:20]))
    other = NeighborAE(**{**SMALL, "max_iter": 8, "random_state": 1}).fit(X[:800])
    assert not np.array_equal(other.transform(X[:20]), fitted.transform(X[:20]))


def test_its_codes_keep_neighbours_better_than_a_plain_autoencoders(digits, digits_test):
    # the point of the model: the same network and budget, with and without the term
    X, y = digits
    X_test, y_test = digits_test
    settings = {**SMALL, "hidden_layer_sizes": (64,), "max_iter": 30, "batch_size": 128}
    plain = aekit.AE(**settings).fit(X)
    kept = NeighborAE(**settings).fit(X)
    acc_plain = knn_accuracy(plain.transform(X), y, plain.transform(X_test), y_test)
    acc_kept = knn_accuracy(kept.transform(X), y, kept.transform(X_test), y_test)
    assert acc_kept > acc_plain + 0.1, (acc_kept, acc_plain)


def test_weight_zero_trains_as_the_plain_autoencoder(digits):
    X, _ = digits
    zero = NeighborAE(neighbor_weight=0.0, **SMALL).fit(X[:300])
    assert zero.history_["loss"] == pytest.approx(zero.history_["recon"])


def test_held_out_rows_find_neighbours_among_training_rows_only(digits):
    X, _ = digits
    model = NeighborAE(early_stopping=True, validation_fraction=0.25, **SMALL)
    model.fit(X[:200])                  # builds the module, then the table on a fresh one
    x = torch.as_tensor(X[:200])
    train = torch.arange(50, 200)
    ctx = FitContext.standalone(torch.Generator().manual_seed(0))
    ctx.train_index = train
    model._pretrain(x, torch.arange(200), ctx)
    table = ctx.shared["neighbors"]
    assert table.shape == (200, 15)
    assert (table >= 50).all()          # rows 0-49 are held out: nobody's neighbour
    assert "val_loss" in model.history_ and "val_neighbors" in model.history_


def test_few_rows_lower_n_neighbors_with_a_warning_and_one_row_is_refused():
    X = np.random.default_rng(0).normal(size=(6, 3))
    with pytest.warns(UserWarning, match="n_neighbors=15 lowered to 5"):
        NeighborAE(**SMALL).fit(X)
    with pytest.raises(InputError, match="at least 2 training rows"):
        NeighborAE(early_stopping=True, validation_fraction=0.5, **SMALL).fit(X[:2])


def test_streaming_is_refused_with_the_reason(tmp_path, digits):
    X, _ = digits
    path = tmp_path / "rows.npy"
    np.save(path, X[:100])
    with pytest.raises(InputError, match="neighbour table"):
        NeighborAE(**SMALL).fit(str(path), memory_budget=1000)


def test_the_report_shows_its_map_and_decodes_a_grid_over_it(fitted, digits, tmp_path):
    pytest.importorskip("matplotlib")
    from aekit.reporting.report import write_report

    X, y = digits
    index = write_report(fitted, X[:400], y[:400], tmp_path / "report", image_shape=(8, 8))
    text = index.read_text(encoding="utf-8")
    for figure in ("latent_scatter.png", "manifold_grid.png", "samples.png"):
        assert figure in text
        assert (index.parent / figure).stat().st_size > 1000
    assert "not a density of x" in text


def test_the_command_line_fits_and_maps_with_it(tmp_path):
    from aekit.cli import main

    path = tmp_path / "nae.safetensors"
    assert main(["fit", "neighbor_ae", "--data", "digits", "--set", "max_iter=2",
                 "--set", "n_neighbors=5", "-o", str(path)]) == 0
    model = aekit.load(path)
    assert type(model) is NeighborAE and model.n_neighbors == 5
    codes = tmp_path / "codes.npy"
    assert main(["transform", str(path), "--data", "digits", "-o", str(codes)]) == 0
    assert np.load(codes).shape[1] == 2
