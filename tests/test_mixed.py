"""Mixed-type tables (likelihood="mixed"): column kinds, the masked likelihood of rows with
holes, imputation, outputs in the table's own types, and save / load."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from sklearn.impute import SimpleImputer

import aekit
from aekit.data import tables
from aekit.distributions import get_likelihood
from aekit.exceptions import InputError

from .conftest import SMALL

pd = pytest.importorskip("pandas")


def people(n=400, seed=0, holes=True):
    """A generated table: two correlated numbers, a yes/no column, a text category that
    follows the numbers, a pandas category; with missing cells when ``holes``."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    frame = pd.DataFrame({
        "height": 170 + 10 * z + rng.normal(size=n),
        "weight": 70 + 8 * z + 2 * rng.normal(size=n),
        "smoker": rng.random(n) < 0.3,
        "colour": np.where(z > 0.5, "red", np.where(z < -0.5, "blue", "green")),
        "grade": pd.Categorical(rng.choice(["a", "b", "c"], n)),
    })
    if holes:
        frame.loc[::7, "weight"] = np.nan
        frame.loc[::11, "colour"] = None
    return frame


@pytest.fixture(scope="module")
def fitted():
    frame = people()
    return frame, aekit.VAE(likelihood="mixed", n_components=2,
                            **{**SMALL, "max_iter": 200}).fit(frame)


# ------------------------------------------------------------------------ column kinds

def test_column_kinds_are_inferred_and_can_be_declared():
    frame = people(holes=False)
    kinds = [c.kind for c in tables.infer_columns(frame)]
    assert kinds == ["numeric", "numeric", "binary", "categorical", "categorical"]
    declared = tables.infer_columns(frame, {"smoker": "categorical", "height": "numeric"})
    assert declared[2].kind == "categorical" and declared[2].levels == ["False", "True"]
    assert tables.infer_columns(frame)[3].levels == ["blue", "green", "red"]


def test_an_all_missing_column_is_refused_by_name():
    with pytest.raises(InputError, match="column 'empty' has no values"):
        aekit.VAE(likelihood="mixed", **SMALL).fit(people(holes=False).assign(empty=np.nan))


def test_a_category_of_thousands_of_levels_is_refused_with_the_count():
    frame = pd.concat([people(holes=False)] * 3, ignore_index=True)
    frame["ids"] = [f"id{i}" for i in range(len(frame))]
    with pytest.raises(InputError, match="column 'ids' has 1200 levels, more than 1000: "
                                         "declare it numeric"):
        aekit.VAE(likelihood="mixed", **SMALL).fit(frame)


def test_new_levels_and_other_columns_are_refused_after_fit(fitted):
    frame, vae = fitted
    odd = frame.head(3).copy()
    odd.loc[0, "colour"] = "purple"
    with pytest.raises(InputError, match="column 'colour' has the level 'purple', which fit "
                                         "never saw"):
        vae.score_samples(odd)
    with pytest.raises(InputError, match="missing: \\['grade'\\]"):
        vae.transform(frame.head(3).drop(columns="grade"))
    with pytest.raises(InputError, match="columns= names \\['nope'\\]"):
        aekit.VAE(likelihood="mixed", columns={"nope": "numeric"}, **SMALL).fit(frame)


def test_text_columns_without_mixed_point_to_it():
    with pytest.raises(InputError, match="use likelihood='mixed'"):
        aekit.VAE(likelihood="gaussian_learned", **SMALL).fit(people(holes=False))


@pytest.mark.parametrize("holes", [False, True])
def test_the_default_likelihood_chooses_mixed_for_a_table_that_needs_it(holes, tmp_path):
    """likelihood="auto": one likelihood per column for a DataFrame with text (or text
    and holes); the choice is ``likelihood_``, kept in the model file; the parameter
    stays "auto" (so a clone chooses again on its own data)."""
    frame = people(holes=holes)
    vae = aekit.VAE(**SMALL).fit(frame)
    assert vae.likelihood == "auto" and vae.likelihood_ == "mixed"
    assert [c["kind"] for c in vae.columns_] == [c["kind"] for c in
                                                 aekit.VAE(likelihood="mixed", **SMALL)
                                                 .fit(frame).columns_]
    assert np.isfinite(vae.score_samples(frame)).all()
    vae.save(tmp_path / "m.safetensors")
    loaded = aekit.load(tmp_path / "m.safetensors")
    assert loaded.likelihood_ == "mixed"
    np.testing.assert_allclose(loaded.score_samples(frame), vae.score_samples(frame),
                               rtol=1e-6)


def test_the_default_likelihood_keeps_numeric_data_as_before():
    """Arrays, numeric DataFrames without holes, and images: "auto" is the learned-sigma
    Gaussian, the same fit bit for bit as naming it; a numeric DataFrame with a hole is a
    table with holes (mixed); a numeric array with a NaN is refused, pointing to mixed."""
    pd = pytest.importorskip("pandas")
    X = np.random.default_rng(0).normal(size=(120, 4)).astype(np.float32)
    frame = pd.DataFrame(X, columns=list("abcd"))
    for data in (X, frame):
        auto = aekit.VAE(**SMALL).fit(data)
        named = aekit.VAE(likelihood="gaussian_learned", **SMALL).fit(data)
        assert auto.likelihood_ == "gaussian_learned"
        np.testing.assert_array_equal(auto.transform(X), named.transform(X))
    frame.iloc[3, 1] = np.nan
    assert aekit.VAE(**SMALL).fit(frame).likelihood_ == "mixed"
    X[3, 1] = np.nan
    with pytest.raises(InputError, match="missing \\(NaN\\).*likelihood='mixed'"):
        aekit.VAE(**SMALL).fit(X)
    assert aekit.AE(**SMALL).fit(np.random.default_rng(0).random((40, 8, 8))).likelihood_ \
        == "gaussian_learned"


def test_declared_columns_make_auto_mixed():
    vae = aekit.VAE(columns={"smoker": "categorical"}, **SMALL).fit(people(holes=False))
    assert vae.likelihood_ == "mixed"
    assert {c["name"]: c["kind"] for c in vae.columns_}["smoker"] == "categorical"
    with pytest.raises(InputError, match="needs likelihood='mixed'"):
        aekit.VAE(likelihood="gaussian", columns={"smoker": "categorical"}, **SMALL).fit(
            people(holes=False))


@pytest.mark.parametrize("model", ["cvae", "m2", "stacked_ae", "vamp_vae"])
def test_models_that_cannot_model_tables_say_so(model):
    with pytest.raises(InputError, match="cannot model mixed tables"):
        aekit.get_model(model, likelihood="mixed", **SMALL).fit(people(), np.zeros(400))


# ------------------------------------------------------------------ the masked likelihood

def test_a_missing_category_is_marginalised_exactly():
    """log p(x_obs | z) = log sum_l p(x_obs, x_c = l | z) for the missing column c."""
    columns = [{"name": "a", "kind": "numeric", "levels": []},
               {"name": "b", "kind": "binary", "levels": []},
               {"name": "c", "kind": "categorical", "levels": ["p", "q", "r"]}]
    lik = get_likelihood("mixed", 3, columns=columns)
    params = torch.randn(4, lik.n_outputs)
    p_x = lik(params)
    x = torch.tensor([[0.3, 1.0, math.nan]] * 4)
    filled = [p_x.log_prob(torch.tensor([[0.3, 1.0, float(level)]] * 4)) for level in range(3)]
    torch.testing.assert_close(p_x.log_prob(x), torch.logsumexp(torch.stack(filled), 0))
    # a missing number: its term (a density that integrates to 1) is left out
    no_a = p_x.log_prob(torch.tensor([[math.nan, 1.0, 2.0]] * 4))
    both = p_x.log_prob(torch.tensor([[0.3, 1.0, 2.0]] * 4))
    a_term = torch.distributions.Normal(params[:, 0], lik.log_scale.exp()[0]).log_prob(
        torch.tensor(0.3))
    torch.testing.assert_close(both - no_a, a_term)


def test_a_row_with_a_hole_scores_about_its_marginal(fitted):
    """The model's log p(x_obs) against log sum_l p(x_obs, colour = l), both estimated
    with many importance samples."""
    frame, vae = fitted
    model = copy.deepcopy(vae).set_params(n_importance_samples=4000)
    row = frame.iloc[[1]].copy()
    row.loc[:, "colour"] = None
    missing = float(model.score_samples(row)[0])
    each = []
    for level in ["blue", "green", "red"]:
        full = row.copy()
        full.loc[:, "colour"] = level
        each.append(float(model.score_samples(full)[0]))
    assert missing == pytest.approx(float(np.logaddexp.reduce(each)), abs=0.15)


# ----------------------------------------------------------------- fitting and imputation

def test_fit_score_and_impute_a_table_with_holes(fitted):
    frame, vae = fitted
    scores = vae.score_samples(frame)
    assert np.isfinite(scores).all()
    filled = vae.impute(frame)
    assert isinstance(filled, pd.DataFrame) and list(filled.columns) == list(frame.columns)
    assert not filled.isna().any().any()
    seen = frame["weight"].notna()
    np.testing.assert_allclose(filled.loc[seen, "weight"], frame.loc[seen, "weight"])
    assert filled["smoker"].dtype == bool and str(filled["grade"].dtype) == "category"
    assert set(filled["colour"]) <= {"blue", "green", "red"}
    samples = vae.sample(5, random_state=0)
    assert isinstance(samples, pd.DataFrame) and samples.shape == (5, 5)


def test_imputation_uses_the_other_columns(fitted):
    """Weight follows height: the model's imputation of hidden weights beats the mean."""
    frame, vae = fitted
    truth = people(holes=False)
    test = truth.copy()
    hide = np.arange(len(test)) % 5 == 1
    test.loc[hide, "weight"] = np.nan
    imputed = vae.impute(test).loc[hide, "weight"].to_numpy()
    mean = SimpleImputer().fit(test[["weight"]]).transform(test[["weight"]])[hide, 0]
    error = np.sqrt(np.mean((imputed - truth.loc[hide, "weight"]) ** 2))
    baseline = np.sqrt(np.mean((mean - truth.loc[hide, "weight"]) ** 2))
    assert error < 0.5 * baseline         # 2.2 against 8.4 when measured


def test_mixed_models_save_and_load_with_their_columns(fitted, tmp_path):
    frame, vae = fitted
    vae.save(tmp_path / "m.safetensors")
    again = aekit.load(tmp_path / "m.safetensors")
    assert again.columns_ == vae.columns_
    np.testing.assert_array_equal(again.score_samples(frame.head(20)),
                                  vae.score_samples(frame.head(20)))
    pd.testing.assert_frame_equal(again.impute(frame.head(20)), vae.impute(frame.head(20)))


def test_numpy_object_tables_and_all_numeric_tables_with_holes():
    table = np.array([[1.5, "x", 0], [2.5, "y", 1], [None, "x", 1], [3.0, None, 0]] * 30,
                     dtype=object)
    ae = aekit.AE(likelihood="mixed", **SMALL).fit(table)
    assert [c["kind"] for c in ae.columns_] == ["numeric", "categorical", "binary"]
    out = ae.impute(table[:4])
    assert isinstance(out, np.ndarray) and out[2, 0] is not None and out[3, 1] in ("x", "y")
    numbers = np.random.default_rng(0).normal(size=(100, 4))
    numbers[::9, 2] = np.nan
    vae = aekit.VAE(likelihood="mixed", **SMALL).fit(numbers)
    assert not np.isnan(vae.impute(numbers).astype(float)).any()


def test_impute_needs_a_mixed_model(fitted):
    with pytest.raises(InputError, match="impute needs a model of likelihood='mixed'"):
        aekit.VAE(**SMALL).fit(np.random.default_rng(0).normal(size=(50, 3))).impute(
            np.zeros((2, 3)))


def test_synthetic_rows_are_drawn_and_follow_the_table(fitted):
    frame, vae = fitted
    rows = vae.sample(2000, random_state=0)
    again = vae.sample(2000, random_state=0)
    pd.testing.assert_frame_equal(rows, again)                        # seeded
    assert set(rows["colour"]) == {"blue", "green", "red"}          # drawn, not one mode
    share = rows["smoker"].mean()
    assert abs(share - frame["smoker"].mean()) < 0.1
    assert abs(rows["height"].mean() - frame["height"].mean()) < 3.0
    assert rows[["height", "weight"]].corr().iloc[0, 1] > 0.5        # the link is kept


def test_cli_fits_imputes_and_samples_a_mixed_csv(capsys, tmp_path):
    from aekit.cli import main

    frame = people(n=200)
    path = tmp_path / "people.csv"
    frame.to_csv(path, index=False)
    model = tmp_path / "m.safetensors"
    code = main(["fit", "vae", "--data", str(path), "--set", "likelihood=mixed", "--set",
                 "max_iter=5", "-o", str(model)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "colour: categorical (3 levels)" in out and "smoker: binary" in out
    code = main(["impute", str(model), "--data", str(path), "-o", str(tmp_path / "f.csv"),
                 "-q"])
    assert code == 0, capsys.readouterr().err
    filled = pd.read_csv(tmp_path / "f.csv")
    assert list(filled.columns) == list(frame.columns) and not filled.isna().any().any()
    seen = frame["height"].notna()
    np.testing.assert_allclose(filled.loc[seen, "height"], frame.loc[seen, "height"])
    code = main(["sample", str(model), "-n", "4", "-o", str(tmp_path / "s.csv")])
    assert code == 0
    assert pd.read_csv(tmp_path / "s.csv").shape == (4, 5)
    code = main(["sample", str(model), "-n", "4", "-o", str(tmp_path / "s.npy")])
    assert code == 2 and "written to .csv" in capsys.readouterr().err


def test_cli_column_kinds_by_header_name_from_a_config_file(capsys, tmp_path):
    from aekit.cli import main

    frame = people(n=100)
    path = tmp_path / "people.csv"
    frame.to_csv(path, index=False)
    spec = tmp_path / "spec.toml"
    spec.write_text('likelihood = "mixed"\nmax_iter = 2\n[columns]\nsmoker = "categorical"\n')
    model = tmp_path / "m.safetensors"
    code = main(["fit", "vae", "--data", str(path), "--config", str(spec), "-o", str(model)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "smoker: categorical (2 levels)" in out
    loaded = aekit.load(model)
    assert loaded.get_params()["columns"] == {"smoker": "categorical"}   # as the user wrote it
    kinds = {c["name"]: c["kind"] for c in loaded.columns_}
    assert kinds["smoker"] == "categorical" and kinds["colour"] == "categorical"
    spec.write_text('likelihood = "mixed"\n[columns]\nsmokes = "categorical"\n')
    code = main(["fit", "vae", "--data", str(path), "--config", str(spec), "-o",
                 str(tmp_path / "other.safetensors")])
    err = capsys.readouterr().err
    assert code == 2 and "['smokes']" in err and "smoker" in err
    assert not (tmp_path / "other.safetensors").exists()


def test_a_parquet_table_reads_as_the_same_csv_does(tmp_path):
    pytest.importorskip("pyarrow")
    from aekit.cli import main
    from aekit.data.datasets import read_csv_table, read_parquet_table

    frame = people(n=60)
    frame.to_csv(tmp_path / "p.csv", index=False)
    frame.to_parquet(tmp_path / "p.parquet")
    from_csv = read_csv_table(tmp_path / "p.csv", allow_text=True)
    from_parquet = read_parquet_table(tmp_path / "p.parquet")
    assert from_parquet.names == from_csv.names
    for a, b in zip(from_parquet.X.ravel(), from_csv.X.ravel()):
        assert (a is None and b is None) or a == pytest.approx(b) or a == b
    model = tmp_path / "m.safetensors"
    assert main(["fit", "vae", "--data", str(tmp_path / "p.parquet"), "--set",
                 "likelihood=mixed", "--set", "max_iter=2", "-q", "-o", str(model)]) == 0
    filled = tmp_path / "f.csv"
    assert main(["impute", str(model), "--data", str(tmp_path / "p.parquet"), "-q", "-o",
                 str(filled)]) == 0
    assert not pd.read_csv(filled).isna().any().any()


def test_the_imputer_fills_holes_inside_a_pipeline():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    X[::5, 0] = np.nan
    pipe = make_pipeline(aekit.Imputer(aekit.VAE(likelihood="mixed", **SMALL)),
                         LogisticRegression())
    assert pipe.fit(X, y).score(X, y) > 0.8
    with pytest.raises(InputError, match="Imputer needs a model of likelihood='mixed'"):
        aekit.Imputer(aekit.VAE(likelihood="gaussian_learned")).fit(X)
    # the default likelihood ("auto") is taken as "mixed": imputing models the holes
    assert aekit.Imputer(aekit.VAE(**SMALL)).fit(X).model_.likelihood_ == "mixed"


def test_an_anomaly_detector_on_a_table_with_categories_and_holes(fitted, tmp_path):
    frame, _ = fitted
    det = aekit.AnomalyDetector(aekit.VAE(likelihood="mixed", n_components=2,
                                          **{**SMALL, "max_iter": 60}),
                                contamination=0.05).fit(frame)
    odd = frame.head(4).copy()
    odd.loc[0, "height"] = 260.0                   # a giant
    odd.loc[1, "colour"] = "blue"                  # blue, although tall (colour follows z)
    odd.loc[1, "height"] = 195.0
    odd.loc[1, "weight"] = 90.0
    scores = det.anomaly_score(odd)
    assert scores[0] > det.threshold_ and scores[0] == scores.max()
    per_column = det.feature_scores(odd)
    assert per_column.shape == (4, 5)
    assert per_column[0].argmax() == list(frame.columns).index("height")
    assert np.isfinite(per_column).all()
    det.save(tmp_path / "det.safetensors")
    again = aekit.load(tmp_path / "det.safetensors")
    np.testing.assert_array_equal(again.anomaly_score(odd), scores)
    recon = aekit.AnomalyDetector(aekit.VAE(**SMALL),      # "auto": mixed for this table
                                  score_type="reconstruction").fit(frame)
    assert recon.model_.likelihood_ == "mixed"
    np.testing.assert_allclose(recon.feature_scores(frame).sum(1),
                               recon.anomaly_score(frame), rtol=1e-5, atol=1e-4)


def test_multiple_imputations_are_draws_around_the_single_one(fitted):
    frame, vae = fitted
    draws = vae.impute(frame, n_draws=20, random_state=0)
    again = vae.impute(frame, n_draws=20, random_state=0)
    assert len(draws) == 20
    pd.testing.assert_frame_equal(draws[3], again[3])                  # seeded
    hole = frame["weight"].isna().to_numpy()
    values = np.stack([d.loc[hole, "weight"].to_numpy(dtype=float) for d in draws])
    assert (values.std(0) > 0.5).all()                                  # they vary
    single = vae.impute(frame).loc[hole, "weight"].to_numpy(dtype=float)
    assert np.abs(values.mean(0) - single).mean() < 2.0                 # around the mean
    seen = ~hole
    for d in draws[:3]:
        np.testing.assert_allclose(d.loc[seen, "weight"], frame.loc[seen, "weight"])
    with pytest.raises(InputError, match="n_draws must be a positive integer"):
        vae.impute(frame, n_draws=0)


# ------------------------------------------------------------------ count columns
def count_table(n=1500, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    frame = pd.DataFrame({"x": z + 0.1 * rng.normal(size=n),
                          "visits": rng.poisson(np.exp(1 + 0.8 * z)).astype(float),
                          "group": np.where(z > 0, "hi", "lo")})
    frame.loc[:19, "visits"] = np.nan
    return frame


def test_a_declared_count_column_is_a_poisson_and_comes_back_as_whole_numbers():
    frame = count_table()
    vae = aekit.VAE(likelihood="mixed", columns={"visits": "count"}, hidden_layer_sizes=(32,),
                    max_iter=40, random_state=0).fit(frame)
    assert [c["kind"] for c in vae.columns_] == ["numeric", "count", "categorical"]
    rows = vae.sample(3000, random_state=0)
    assert rows["visits"].dtype == np.int64 and (rows["visits"] >= 0).all()
    assert abs(rows["visits"].mean() - frame["visits"].mean()) < 0.5
    filled = vae.impute(frame)
    holes = filled.loc[:19, "visits"]
    assert (holes == np.floor(holes)).all() and (holes >= 0).all()
    pd.testing.assert_series_equal(filled.loc[20:, "visits"], frame.loc[20:, "visits"])
    # the column's term is the Poisson log-pmf at the decoder's rate
    x = torch.as_tensor(vae._validate_X(frame[20:25], reset=False))
    with torch.no_grad():
        p_x = vae._decode(vae._encode(x))
        rate = p_x.count.rate[:, 0]
        terms = p_x.column_log_prob(x)[:, 1]
    k = x[:, 1]
    expected = k * torch.log(rate) - rate - torch.lgamma(k + 1)
    torch.testing.assert_close(terms, expected, rtol=1e-5, atol=1e-5)


def test_counts_are_declared_never_inferred_and_bad_counts_are_refused():
    frame = count_table(200)
    inferred = aekit.data.tables.infer_columns(frame)
    assert inferred[1].kind == "numeric"
    bad = frame.copy()
    bad.loc[50, "visits"] = 2.5
    with pytest.raises(InputError, match="declared count but holds 2.5"):
        aekit.VAE(likelihood="mixed", columns={"visits": "count"}, **SMALL).fit(bad)
    vae = aekit.VAE(likelihood="mixed", columns={"visits": "count"}, **SMALL).fit(frame)
    negative = frame[:5].copy()
    negative.loc[2, "visits"] = -1
    with pytest.raises(InputError, match="is a count but holds -1"):
        vae.score_samples(negative)
