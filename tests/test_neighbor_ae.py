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
from aekit.models.neighbor_ae import (
    PLACEMENT,
    NeighborAE,
    neighbor_embedding_loss,
    place_on_map,
    placement_cost,
)
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


def _table(model, X):
    """The neighbour table a fit of ``model`` on ``X`` builds, every row a training row."""
    model.fit(X)
    ctx = FitContext.standalone(torch.Generator().manual_seed(0))
    model._pretrain(torch.as_tensor(X), torch.arange(len(X)), ctx)
    return ctx.shared["neighbors"].numpy()


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "hellinger"])
def test_the_table_follows_the_metric(metric):
    # rows whose lengths vary 20-fold: Euclidean neighbours are mostly rows of like length,
    # cosine ones rows of like direction whatever their lengths; Hellinger's square roots
    # weigh the faint features up
    rng = np.random.default_rng(0)
    X = (rng.random((80, 6)) * rng.uniform(0.05, 1.0, (80, 1))).astype(np.float32)
    table = _table(NeighborAE(n_neighbors=4, metric=metric, knn_method="exact",
                              likelihood="bernoulli", **{**SMALL, "max_iter": 1}), X)
    x = X.astype(np.float64)
    if metric == "euclidean":
        d = ((x[:, None] - x[None]) ** 2).sum(-1)
    elif metric == "cosine":
        u = x / np.linalg.norm(x, axis=1, keepdims=True)
        d = 1 - u @ u.T
    else:           # Hellinger between the rows as measures (not normalised)
        d = np.sqrt(((np.sqrt(x[:, None]) - np.sqrt(x[None])) ** 2).sum(-1) / 2)
    np.fill_diagonal(d, np.inf)
    np.testing.assert_array_equal(table, np.argsort(d, axis=1)[:, :4])
    if metric != "euclidean":       # and it is a different table from the Euclidean one
        euclidean = ((x[:, None] - x[None]) ** 2).sum(-1)
        np.fill_diagonal(euclidean, np.inf)
        assert (table != np.argsort(euclidean, axis=1)[:, :4]).any()


def test_hellinger_refuses_negative_rows_and_says_what_to_use():
    X = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    with pytest.raises(InputError, match="metric='hellinger' compares nonnegative rows"):
        NeighborAE(metric="hellinger", **SMALL).fit(X)
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"size": np.abs(X[:, 0]), "kind": ["a", "b"] * 20})
    with pytest.raises(InputError, match="as amounts of one kind"):
        NeighborAE(metric="hellinger", likelihood="mixed", **SMALL).fit(frame)
    with pytest.raises(ValueError, match="metric"):
        NeighborAE(metric="manhattan", **SMALL).fit(np.abs(X))


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


# ------------------------------------------------------------------ embedding="tsne"
# openTSNE's 500 map iterations, not the default 1500: these tests ask what the model does
# with a map, not how converged the map is, and they fit many (the defaults: their own test)
TSNE = {**SMALL, "embedding": "tsne", "max_iter": 8, "map_iter": 500}


@pytest.fixture(scope="module")
def tsne_fitted(digits):
    pytest.importorskip("openTSNE")
    X, _ = digits
    return NeighborAE(**TSNE).fit(X[:300])


def test_the_map_loss_matches_a_hand_computation(tsne_fitted, digits):
    X, _ = digits
    model = tsne_fitted
    x = torch.as_tensor(X[:6])
    places = torch.tensor([[0.0, 0.0], [1.0, -1.0], [2.0, 0.5], [-1.0, 3.0], [0.5, 0.5],
                           [-2.0, -2.0]])
    ctx = FitContext.standalone(torch.Generator().manual_seed(0))
    ctx.shared["map"] = places
    with torch.no_grad():
        terms = model._loss(x, torch.arange(6), ctx)
        recon = -model._decode(places).log_prob(x)                      # from the map
        codes = model.module_.encoder(model._standardize(x))            # the encoder's
        error = ((codes - places) ** 2).sum(1)
    expected = (recon + model.neighbor_weight * 64 * error).mean()
    torch.testing.assert_close(terms.total, expected)
    torch.testing.assert_close(terms.terms["neighbors"], error.mean())


def test_the_tsne_map_keeps_the_whole_contract(tsne_fitted, digits, digits_test, tmp_path):
    X, _ = digits
    X_test, _ = digits_test
    model = tsne_fitted
    assert model.n_reference_ == 300 and model.map_scale_ > 0
    np.testing.assert_array_equal(model.module_.reference_rows.numpy(),
                                  model._standardize(torch.as_tensor(X[:300])).numpy())
    places = model.module_.reference_codes.numpy()
    assert places.shape == (300, 2) and places.std() == pytest.approx(1.0, rel=1e-4)
    codes = model.transform(X_test[:40])
    assert codes.shape == (40, 2) and np.isfinite(codes).all()
    assert model.inverse_transform(codes).shape == (40, 64)
    assert np.isfinite(model.score_samples(X_test[:10])).all()
    draws = model.sample(20, random_state=0)
    assert draws.shape == (20, 64) and np.isfinite(draws).all()
    # the kernel density sample() draws from sits on the map, not on the encoder's copy
    np.testing.assert_array_equal(model.module_.code_points.numpy()[:3],
                                  places[(np.arange(3) * 300) // 1024])
    path = tmp_path / "tsne.safetensors"
    model.save(path)
    loaded = aekit.load(path)
    assert "_tsne_reference" not in vars(loaded)        # rebuilt from the file, on first use
    np.testing.assert_array_equal(loaded.transform(X_test[:40]), codes)
    np.testing.assert_array_equal(loaded.sample(20, random_state=0), draws)


def test_a_training_row_gets_its_place_on_the_map(tsne_fitted, digits):
    X, _ = digits
    places = tsne_fitted.module_.reference_codes.numpy()
    np.testing.assert_array_equal(tsne_fitted.transform(X[:300]), places)
    np.testing.assert_array_equal(tsne_fitted.transform(X[[7, 3, 7]]), places[[7, 3, 7]])


def test_a_row_near_a_training_row_is_placed_by_its_place(tsne_fitted, digits):
    X, _ = digits
    places = tsne_fitted.module_.reference_codes.numpy()
    nudged = X[:300] + np.float32(1e-3)                    # no longer any training row
    placed = tsne_fitted.transform(nudged)
    assert not (placed == places).all(1).any()
    # its nearest neighbour is its own row, a hair away: it lands by that row's place; the
    # map's standard deviation is 1, and a row's place is far from most others'
    moved = np.sqrt(((placed - places) ** 2).sum(1))
    to_others = np.sqrt(((places[:, None] - places[None]) ** 2).sum(-1))
    assert np.median(moved) < 0.1 * np.median(to_others), (np.median(moved),
                                                           np.median(to_others))


@pytest.mark.parametrize("dof", [1.0, 0.6])
def test_the_placement_cost_matches_a_hand_computation(dof):
    import scipy.sparse as sp

    places = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, -1.0], [5.0, 5.0]])
    placed = np.array([[0.5, 0.0], [4.0, 4.0]])
    P = sp.csr_matrix([[0.7, 0.3, 0.0, 0.0], [0.0, 0.0, 0.25, 0.75]])
    w = lambda a, b: (1.0 + ((a - b) ** 2).sum() / dof) ** -dof  # noqa: E731
    expected = []
    for i in range(2):
        norm = sum(w(placed[i], r) for r in places)
        expected.append(sum(p * math.log(p / (w(placed[i], places[j]) / norm))
                            for j, p in enumerate(P.toarray()[i]) if p > 0))
    np.testing.assert_allclose(placement_cost(placed, P, places, dof), expected, rtol=1e-6)


def test_the_placement_cost_in_blocks_is_the_direct_sum():
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    places = rng.normal(scale=20.0, size=(20_000, 2))     # blocks of fewer than 300 rows
    placed = rng.normal(scale=20.0, size=(300, 2))
    cols = rng.choice(len(places), size=(300, 3))
    weights = rng.dirichlet(np.ones(3), size=300)
    P = sp.csr_matrix((weights.ravel(), (np.repeat(np.arange(300), 3), cols.ravel())),
                      shape=(300, len(places)))
    d2 = ((placed[:, None, :] - places[None]) ** 2).sum(-1)              # (300, n)
    log_q = -np.log1p(d2) - np.log((1.0 / (1.0 + d2)).sum(1, keepdims=True))
    dense = P.toarray()
    expected = (dense * (np.log(np.where(dense > 0, dense, 1.0)) - log_q)).sum(1)
    np.testing.assert_allclose(placement_cost(placed, P, places), expected, rtol=1e-5)


@pytest.mark.parametrize("dof", ["the model's", 0.6])
def test_each_new_row_keeps_its_placement_of_lowest_cost(tsne_fitted, digits_test, dof):
    import openTSNE

    X_test, _ = digits_test
    reference = tsne_fitted._reference_map()
    own = dof == "the model's"
    dof = tsne_fitted.dof if own else dof
    if not own:             # the same map with a heavier-tailed kernel, placed by FFT
        reference = openTSNE.TSNEEmbedding(np.asarray(reference), reference.affinities,
                                           dof=dof, negative_gradient_method="fft",
                                           random_state=0, n_jobs=1)
    X_new = tsne_fitted._validate_X(X_test[:120], reset=False)
    rows = np.ascontiguousarray(tsne_fitted._map_rows(X_new, tsne_fitted._seen))
    P = reference.prepare_partial(rows, initialization="median", k=PLACEMENT["k"],
                                  perplexity=PLACEMENT["perplexity"]).P
    places = np.asarray(reference)
    median = place_on_map(reference, rows, nearest_starts=0)     # openTSNE's one start
    best = place_on_map(reference, rows)
    single = placement_cost(median, P, places, dof)
    chosen = placement_cost(best, P, places, dof)
    # the median start is one of the candidates, so no row's cost rises, and the nearest
    # training rows' places give some rows a lower one
    assert (chosen <= single + 1e-9).all()
    assert (chosen < single - 1e-3).any(), np.sort(single - chosen)[-5:]
    if own:
        np.testing.assert_array_equal(tsne_fitted._place(rows),
                                      (best / tsne_fitted.map_scale_).astype(np.float32))


def test_the_tsne_map_keeps_neighbours_of_new_rows(digits, digits_test):
    pytest.importorskip("openTSNE")
    X, y = digits
    X_test, y_test = digits_test
    model = NeighborAE(**{**TSNE, "max_iter": 2}).fit(X[:800])
    acc = knn_accuracy(model.transform(X[:800]), y[:800], model.transform(X_test), y_test)
    assert acc > 0.9, acc      # the contrastive map: about 0.82 on these rows (BENCHMARKS.md)


def test_a_tsne_fit_repeats_with_its_random_state(tsne_fitted, digits, digits_test):
    X, _ = digits
    X_test, _ = digits_test
    again = NeighborAE(**TSNE).fit(X[:300])
    np.testing.assert_array_equal(again.module_.reference_codes.numpy(),
                                  tsne_fitted.module_.reference_codes.numpy())
    np.testing.assert_array_equal(again.transform(X_test[:20]),
                                  tsne_fitted.transform(X_test[:20]))
    other = NeighborAE(**{**TSNE, "random_state": 1}).fit(X[:300])
    assert not np.array_equal(other.module_.reference_codes.numpy(),
                              tsne_fitted.module_.reference_codes.numpy())


def test_held_out_rows_are_placed_on_the_training_map(digits):
    pytest.importorskip("openTSNE")
    X, _ = digits
    model = NeighborAE(**{**TSNE, "early_stopping": True, "validation_fraction": 0.25})
    model.fit(X[:200])
    assert model.n_reference_ == 150              # the map holds the training rows only
    assert "val_loss" in model.history_ and np.isfinite(model.history_["val_neighbors"]).all()


def test_tsne_refusals_say_what_to_do(digits, monkeypatch):
    X, _ = digits
    with pytest.raises(InputError, match="1-D or 2-D"):
        NeighborAE(**{**TSNE, "n_components": 3}).fit(X[:100])
    monkeypatch.setitem(__import__("sys").modules, "openTSNE", None)
    with pytest.raises(InputError, match=r"pip install 'aekit\[tsne\]'"):
        NeighborAE(**TSNE).fit(X[:100])


def test_a_resumed_tsne_fit_is_the_uninterrupted_one(digits, tmp_path):
    pytest.importorskip("openTSNE")
    X, _ = digits
    params = {**TSNE, "early_stopping": True, "n_iter_no_change": 50}
    full = NeighborAE(**{**params, "max_iter": 4}).fit(X[:200], checkpoint_dir=tmp_path / "a")
    NeighborAE(**{**params, "max_iter": 2}).fit(X[:200], checkpoint_dir=tmp_path / "b")
    resumed = NeighborAE(**{**params, "max_iter": 4}).fit(X[:200], checkpoint_dir=tmp_path / "b",
                                                          resume=True)
    for name, value in full.module_.state_dict().items():
        torch.testing.assert_close(resumed.module_.state_dict()[name], value, rtol=0, atol=0)
    assert resumed.history_["val_loss"] == full.history_["val_loss"]


def test_a_warm_tsne_fit_maps_its_own_rows_with_the_fitted_networks(digits):
    """warm_start on other rows: the networks carry over, the map and its reference rows
    are the new fit's own (a model of 250 rows warm-started on 200)."""
    pytest.importorskip("openTSNE")
    X, _ = digits
    model = NeighborAE(**{**TSNE, "max_iter": 3}).fit(X[:250])
    decoder = {k: v.clone() for k, v in model.module_.decoder.state_dict().items()}
    model.set_params(warm_start=True, max_iter=1, learning_rate=1e-12)
    model.fit(X[250:450])
    assert model.n_reference_ == 200
    fresh = NeighborAE(**{**TSNE, "max_iter": 1}).fit(X[250:450])
    for name in ("reference_rows", "likelihood.data_loc", "likelihood.data_scale"):
        np.testing.assert_array_equal(model.module_.state_dict()[name].numpy(),
                                      fresh.module_.state_dict()[name].numpy())
    np.testing.assert_array_equal(model.module_.reference_codes.numpy(),
                                  fresh.module_.reference_codes.numpy())
    for name, value in decoder.items():     # a step of 1e-12 leaves the weights in place
        torch.testing.assert_close(model.module_.decoder.state_dict()[name], value,
                                   rtol=0, atol=1e-9)


def test_a_tsne_map_of_hellinger_distances_maps_and_reloads(digits, digits_test, tmp_path):
    pytest.importorskip("openTSNE")
    X, _ = digits
    X_test, _ = digits_test
    model = NeighborAE(**{**TSNE, "max_iter": 2, "metric": "hellinger"}).fit(X[:300])
    # the map is made of the rows as Hellinger distance compares them: the grey levels'
    # square roots (not the standardised rows the encoder sees)
    np.testing.assert_allclose(model.module_.reference_rows.numpy(), np.sqrt(X[:300]),
                               rtol=1e-6, atol=1e-7)
    places = model.module_.reference_codes.numpy()
    np.testing.assert_array_equal(model.transform(X[:300]), places)
    codes = model.transform(X_test[:30])
    assert codes.shape == (30, 2) and np.isfinite(codes).all()
    path = tmp_path / "hellinger.safetensors"
    model.save(path)
    loaded = aekit.load(path)
    assert loaded.metric == "hellinger"
    np.testing.assert_array_equal(loaded.transform(X_test[:30]), codes)


def test_the_maps_iterations_and_kernel_reach_openTSNE_and_the_file(digits, digits_test,
                                                                    tmp_path, monkeypatch):
    openTSNE = pytest.importorskip("openTSNE")
    from .test_io import _rewrite

    X, _ = digits
    X_test, _ = digits_test
    asked = []

    class Recording(openTSNE.TSNE):
        def __init__(self, **kwargs):
            asked.append(kwargs)
            super().__init__(**kwargs)

    monkeypatch.setattr(openTSNE, "TSNE", Recording)
    model = NeighborAE(**{**TSNE, "max_iter": 2, "map_iter": 60, "dof": 0.6}).fit(X[:200])
    assert [(a["n_iter"], a["dof"]) for a in asked] == [(60, 0.6)]
    assert model._reference_map().gradient_descent_params["dof"] == 0.6   # new rows too
    codes = model.transform(X_test[:30])
    path = tmp_path / "dof.safetensors"
    model.save(path)
    loaded = aekit.load(path)
    assert (loaded.map_iter, loaded.dof) == (60, 0.6)
    assert loaded._reference_map().gradient_descent_params["dof"] == 0.6
    np.testing.assert_array_equal(loaded.transform(X_test[:30]), codes)
    # a file written before these parameters existed was made with openTSNE's 500
    # iterations and t-SNE's own kernel, and loads so, whatever the defaults are now
    meta = _rewrite(path)
    del meta["params"]["map_iter"], meta["params"]["dof"]
    _rewrite(path, meta=meta)
    old = aekit.load(path)
    assert (old.map_iter, old.dof) == (500, 1.0)
    assert old._reference_map().gradient_descent_params["dof"] == 1.0
    assert (NeighborAE().map_iter, NeighborAE().dof) == (1500, 0.9)   # the defaults now


def test_a_tsne_map_of_a_mixed_table_with_holes(tsne_fitted):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"size": rng.normal(size=120), "kind": rng.choice(["a", "b", "c"], 120),
                          "flag": rng.random(120) < 0.3})
    frame.loc[::7, "size"] = np.nan
    model = NeighborAE(**{**TSNE, "likelihood": "mixed"}).fit(frame)
    codes = model.transform(frame.iloc[:10])
    assert codes.shape == (10, 2) and np.isfinite(codes).all()
    filled = model.impute(frame.iloc[:14])
    assert not filled["size"].isna().any()


def test_the_report_draws_and_decodes_the_tsne_map(tsne_fitted, digits, tmp_path):
    pytest.importorskip("matplotlib")
    from aekit.reporting.report import write_report

    X, y = digits
    index = write_report(tsne_fitted, X[:300], y[:300], tmp_path / "report",
                         image_shape=(8, 8))
    for figure in ("latent_scatter.png", "manifold_grid.png"):
        assert (index.parent / figure).stat().st_size > 1000
