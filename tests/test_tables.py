"""A user's table: CSV files on the command line (label and feature columns, CSV outputs
with the table's column names) and DataFrames (pandas, polars) in the library."""

from __future__ import annotations

import csv
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

import aekit
from aekit.cli import main
from aekit.data import datasets
from aekit.exceptions import InputError

from .conftest import SMALL

NAMES = ["alcohol", "malic", "ash", "alcalinity", "magnesium", "phenols", "flavanoids",
         "nonflav", "proanth", "colour", "hue", "od", "proline"]


@pytest.fixture(scope="module")
def wine():
    X, y = load_wine(return_X_y=True)
    return X, y


@pytest.fixture
def wine_csv(tmp_path, wine):
    """The wine table as a user's CSV: a header, raw features, text class names last."""
    X, y = wine
    path = tmp_path / "wine.csv"
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow([*NAMES, "cultivar"])
        out.writerows([[*map(str, row), f"c{label}"] for row, label in zip(X, y)])
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], np.array(rows[1:], dtype=np.float64)


# ------------------------------------------------------------------------- CSV reading

def test_a_named_label_column_is_read_as_labels_and_never_trained_on(wine_csv, wine):
    table = datasets.read_csv_table(wine_csv, label_column="Cultivar")
    assert table.names == NAMES and table.X.shape == (178, 13)
    assert list(table.y[:2]) == ["c0", "c0"]
    np.testing.assert_allclose(table.X, wine[0], rtol=1e-6)


def test_columns_pick_features_by_name_or_index(wine_csv):
    table = datasets.read_csv_table(wine_csv, columns=["proline", "0"], label_column="13")
    assert table.names == ["proline", "alcohol"] and table.X.shape == (178, 2)


@pytest.mark.parametrize("kwargs, message", [
    ({}, r"column 'cultivar' holds text \('c0'\).*--label-column"),
    ({"label_column": "species"}, r"no column 'species' \(--label-column\); its columns are "
                                  r"alcohol, malic"),
    ({"columns": ["ash", "cultivar"], "label_column": "cultivar"},
     "'cultivar' is the label column and cannot also be a feature"),
])
def test_table_mistakes_name_the_column(wine_csv, kwargs, message):
    with pytest.raises(InputError, match=message):
        datasets.read_csv_table(wine_csv, **kwargs)


def test_empty_cells_are_missing_values_named_by_the_model(tmp_path):
    path = tmp_path / "holes.csv"
    path.write_text("a,b,c\n1,2,3\n4,,6\n7,8,9\n")
    table = datasets.read_csv_table(path)
    assert np.isnan(table.X[1, 1])
    with pytest.raises(InputError, match=r"missing \(NaN\) values in 1 column\(s\): 1 \(rows 1\)"):
        aekit.VAE(**SMALL).fit(table.X)


# -------------------------------------------------------------------------------- CLI

def test_cli_fits_a_csv_and_writes_csv_outputs_with_the_tables_names(capsys, wine_csv,
                                                                      tmp_path):
    model = tmp_path / "m.safetensors"
    code, out, err = run(capsys, "fit", "vae", "--data", wine_csv, "--label-column",
                         "cultivar", "-o", model, "--set", "max_iter=5")
    assert code == 0, err
    assert "likelihood 'gaussian_learned'" in out and "standardised" in out
    assert "MLP 13 -> 256 -> 128 -> 2" in out
    fitted = aekit.load(model)
    assert list(fitted.feature_names_in_) == NAMES and fitted.n_features_in_ == 13

    code, _, err = run(capsys, "transform", model, "--data", wine_csv, "--label-column",
                       "cultivar", "-o", tmp_path / "z.csv")
    assert code == 0 and "feature names" not in err, err
    header, z = read_csv(tmp_path / "z.csv")
    assert header == ["z0", "z1"] and z.shape == (178, 2)
    X = datasets.read_csv_table(wine_csv, label_column="cultivar").X
    np.testing.assert_allclose(z, fitted.transform(X), rtol=1e-6)

    code, _, err = run(capsys, "sample", model, "-n", "7", "--seed", "1", "-o",
                       tmp_path / "s.csv")
    assert code == 0, err
    header, samples = read_csv(tmp_path / "s.csv")
    assert header == NAMES and samples.shape == (7, 13)
    assert samples[:, NAMES.index("proline")].mean() > 100      # the data's own units

    code, _, err = run(capsys, "score", model, "--data", wine_csv, "--label-column",
                       "cultivar", "-o", tmp_path / "ll.csv")
    assert code == 0, err
    header, ll = read_csv(tmp_path / "ll.csv")
    assert header == ["log_p"] and ll.shape == (178, 1)


def test_cli_refuses_a_text_column_in_one_line_and_writes_nothing(capsys, wine_csv, tmp_path):
    code, _, err = run(capsys, "fit", "vae", "--data", wine_csv, "-o",
                       tmp_path / "m.safetensors", "--set", "likelihood=gaussian_learned")
    assert code == 2
    assert err.count("\n") == 1 and "column 'cultivar' holds text" in err
    assert not (tmp_path / "m.safetensors").exists()


def test_cli_default_likelihood_models_a_text_column_per_column(capsys, wine_csv, tmp_path):
    """With the default likelihood ("auto") a .csv with a text column trains one likelihood
    per column, and says so; a numeric .csv trains as before."""
    code, out, err = run(capsys, "fit", "vae", "--data", wine_csv, "-o",
                         tmp_path / "m.safetensors", "--set", "max_iter=2")
    assert code == 0, err
    assert "chosen: likelihood 'mixed'" in out and "cultivar: categorical" in out
    assert aekit.load(tmp_path / "m.safetensors").likelihood_ == "mixed"
    code, out, err = run(capsys, "fit", "vae", "--data", wine_csv, "--columns",
                         "alcohol,malic", "-o", tmp_path / "n.safetensors",
                         "--set", "max_iter=2")
    assert code == 0, err
    assert "chosen: likelihood 'gaussian_learned'" in out


def test_cli_picks_columns_of_an_npy_table_by_index(capsys, wine, tmp_path):
    X, y = wine
    np.save(tmp_path / "t.npy", np.column_stack([X, y]).astype(np.float32))
    code, _, err = run(capsys, "fit", "ae", "--data", tmp_path / "t.npy", "--label-column",
                       "13", "--columns", "0,1,2", "-o", tmp_path / "m.safetensors",
                       "--set", "max_iter=2", "-q")
    assert code == 0, err
    assert aekit.load(tmp_path / "m.safetensors").n_features_in_ == 3
    code, _, err = run(capsys, "fit", "ae", "--data", tmp_path / "t.npy", "--label-column",
                       "cultivar", "-o", tmp_path / "m2.safetensors")
    assert code == 2 and "0-based indices below 14" in err


def test_cli_columns_need_a_table(capsys, tmp_path):
    code, _, err = run(capsys, "fit", "vae", "--data", "digits", "--columns", "1,2", "-o",
                       tmp_path / "m.safetensors")
    assert code == 2 and "pick columns of a .csv, .npy or .npz table" in err


# ------------------------------------------------------------------------- DataFrames

@pytest.fixture(scope="module")
def pd():
    return pytest.importorskip("pandas")


def test_pandas_frames_in_and_out_as_in_scikit_learn(pd, wine):
    X, _ = wine
    frame = pd.DataFrame(X, columns=NAMES)
    vae = aekit.VAE(n_components=3, **SMALL).fit(frame)
    assert list(vae.feature_names_in_) == NAMES
    assert list(vae.get_feature_names_out()) == ["vae0", "vae1", "vae2"]
    codes = vae.set_output(transform="pandas").transform(frame)
    assert isinstance(codes, pd.DataFrame) and list(codes.columns) == ["vae0", "vae1", "vae2"]
    np.testing.assert_allclose(codes.to_numpy(), vae.set_output(transform="default")
                               .transform(X.astype(np.float32)), rtol=1e-6)
    assert np.isfinite(vae.score_samples(frame)).all()
    with pytest.raises(ValueError, match="feature names"):
        vae.transform(frame[NAMES[::-1]])          # columns in another order


def test_pandas_text_and_category_columns_are_named(pd, wine):
    X, _ = wine
    frame = pd.DataFrame(X[:, :3], columns=NAMES[:3])
    frame["region"] = ["north", "south"] * 89
    frame["grade"] = pd.Categorical(["a", "b"] * 89)
    with pytest.raises(InputError, match=r"non-numeric column\(s\) 'region' \(.*\), 'grade'"):
        aekit.VAE(likelihood="gaussian_learned", **SMALL).fit(frame)
    assert aekit.VAE(**SMALL).fit(frame).likelihood_ == "mixed"      # the default models it


def test_pandas_integer_and_boolean_columns_work(pd):
    frame = pd.DataFrame({"count": np.arange(50) % 7, "flag": np.arange(50) % 2 == 0,
                          "x": np.linspace(0, 1, 50)})
    assert aekit.AE(**SMALL).fit(frame).transform(frame).shape == (50, 2)


def test_a_pipeline_grid_search_over_n_components(pd, wine):
    X, y = wine
    frame = pd.DataFrame(X, columns=NAMES)
    pipe = make_pipeline(aekit.VAE(**{**SMALL, "max_iter": 3}),
                         LogisticRegression(max_iter=500))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search = GridSearchCV(pipe, {"vae__n_components": [2, 4]}, cv=2).fit(frame, y)
    assert search.best_params_["vae__n_components"] in (2, 4)
    assert clone(search.best_estimator_).get_params()["vae__n_components"] in (2, 4)


def test_polars_frames_are_accepted(wine):
    pl = pytest.importorskip("polars")
    X, _ = wine
    frame = pl.DataFrame({n: X[:, i] for i, n in enumerate(NAMES)})
    vae = aekit.VAE(**SMALL).fit(frame)
    assert list(vae.feature_names_in_) == NAMES
    assert vae.transform(frame).shape == (178, 2)
    bad = frame.with_columns(pl.Series("region", ["n", "s"] * 89))
    with pytest.raises(InputError, match="non-numeric column.*'region'"):
        aekit.VAE(likelihood="gaussian_learned", **SMALL).fit(bad)
    assert aekit.VAE(**SMALL).fit(bad).likelihood_ == "mixed"
