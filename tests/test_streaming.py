"""Data streamed from disk: sources, shuffling, the training loop, inference and the CLI."""

import os
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest
import torch

import aekit
from aekit.cli.main import main
from aekit.data import sources, streaming
from aekit.data.sources import BatchSource, ImageFolderSource, NpySource, ParquetSource
from tests.conftest import SMALL, assert_same_weights, weights

pq = pytest.importorskip("pyarrow.parquet")
pa = pytest.importorskip("pyarrow")
STREAM = 1000       # a memory budget (bytes) far below any test data: always stream


def _header_only(path, shape):
    """A .npy file whose header declares ``shape`` (no data follow)."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False,
                                                 "shape": shape})


def _npy(tmp_path, X, name="x.npy"):
    path = tmp_path / name
    np.save(path, X)
    return path


def _parquet(tmp_path, X, rows_per_group=100, labels=None, name="x.parquet"):
    cols = {f"f{i}": X[:, i] for i in range(X.shape[1])}
    if labels is not None:
        cols["label"] = labels
    path = tmp_path / name
    pq.write_table(pa.table(cols), path, row_group_size=rows_per_group)
    return path


# ------------------------------------------------------------------ sources

def test_npy_source_reads_rows_blocks_and_integers(tmp_path):
    X = np.arange(60, dtype=np.uint8).reshape(10, 2, 3)
    src = NpySource(_npy(tmp_path, X))
    assert (src.n_rows, src.row_shape) == (10, (2, 3))
    np.testing.assert_allclose(src.read_rows(np.array([1, 2, 7])), X[[1, 2, 7]] / 255, rtol=1e-6)
    np.testing.assert_allclose(np.concatenate(list(src.iter_blocks())), X / 255, rtol=1e-6)
    memmap = np.load(tmp_path / "x.npy", mmap_mode="r")
    assert isinstance(sources.open_source(memmap), NpySource)
    assert isinstance(sources.open_source(memmap[2:]), sources.ArraySource)   # a view


@pytest.mark.parametrize("make, message", [
    (lambda p: np.save(p, np.zeros(5, np.float32)), "expected rows"),
    (lambda p: np.save(p, np.asfortranarray(np.zeros((4, 3), np.float32))), "Fortran order"),
    (lambda p: np.save(p, np.array([["a"], ["b"]])), "aekit needs numbers"),
    (lambda p: p.write_bytes(b"not an array"), "cannot read"),
    (lambda p: _header_only(p, (2**62, 0)), r"shape \(4611686018427387904, 0\): rows with no"),
    (lambda p: np.save(p, np.zeros((5, 0), np.float32)), r"shape \(5, 0\): rows with no values"),
    (lambda p: np.save(p, np.zeros((0, 3), np.float32)), r"shape \(0, 3\): no rows"),
    (lambda p: _header_only(p, (-5, 3)), r"shape \(-5, 3\): negative sizes"),
])
def test_npy_source_refuses_bad_files(tmp_path, make, message):
    path = tmp_path / "bad.npy"
    make(path)
    with pytest.raises(ValueError, match=message):
        NpySource(path)


def test_npy_source_refuses_a_truncated_file(tmp_path):
    path = _npy(tmp_path, np.zeros((100, 8), np.float32))
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ValueError, match="truncated"):
        NpySource(path)


def test_parquet_source_reads_row_groups_and_labels(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.random((250, 4)).astype(np.float32)
    src = ParquetSource(_parquet(tmp_path, X, labels=np.arange(250) % 3))
    assert (src.n_rows, src.row_shape, src.n_blocks) == (250, (4,), 3)
    np.testing.assert_array_equal(np.concatenate(list(src.iter_blocks())), X)
    np.testing.assert_array_equal(src.labels(), np.arange(250) % 3)
    # a folder of files, and a column of fixed-length vectors
    folder = tmp_path / "parts"
    folder.mkdir()
    for i in range(2):
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(X[i * 125:(i + 1) * 125].ravel()), 4)
        pq.write_table(pa.table({"emb": vectors}), folder / f"{i}.parquet", row_group_size=50)
    both = sources.open_source(folder)
    assert isinstance(both, ParquetSource) and both.n_blocks == 6
    np.testing.assert_array_equal(np.concatenate(list(both.iter_blocks())), X)


def test_parquet_source_refuses_text_columns(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": [1.0, 2.0], "b": ["x", "y"]}), path)
    with pytest.raises(ValueError, match="not numeric"):
        ParquetSource(path)
    assert ParquetSource(path, columns=["a"]).row_shape == (1,)


def test_parquet_text_labels_become_the_index_of_the_sorted_labels(tmp_path):
    X = np.arange(8, dtype=np.float32).reshape(4, 2)
    src = ParquetSource(_parquet(tmp_path, X, labels=["dog", "cat", "emu", "cat"]))
    np.testing.assert_array_equal(src.labels(), [1, 0, 2, 0])
    src = ParquetSource(_parquet(tmp_path, X, labels=[1.0, 0.0, 2.0, 0.0], name="f.parquet"))
    np.testing.assert_array_equal(src.labels(), [1, 0, 2, 0])


@pytest.mark.parametrize("table, message", [
    (lambda: pa.table({"a": pa.array([], pa.float32())}), "holds no rows"),
    (lambda: pa.table({"e": pa.array([], pa.list_(pa.float32(), 3))}), "holds no rows"),
    (lambda: pa.table({"a": [1.0, 2.0], "label": [1, None]}), "has 1 missing values"),
    (lambda: pa.table({"a": [1.0, 2.0], "label": [0.5, 1.0]}), "non-integer numbers"),
], ids=["empty", "empty-vector-column", "missing-label", "fractional-label"])
def test_parquet_source_refuses_empty_files_and_bad_labels(tmp_path, table, message):
    path = tmp_path / "t.parquet"
    pq.write_table(table(), path)
    with pytest.raises(ValueError, match=message) as info:
        ParquetSource(path).labels()
    assert str(path) in str(info.value)


def _png_header(path, width, height):
    """A PNG file with only its IHDR (width, height, 8-bit grey) and IEND: a few dozen
    bytes declaring any number of pixels."""
    import struct
    import zlib

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


def _truncated_png(path):
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 50), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:200])


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b""), "is not a readable image"),
    (lambda p: p.write_text("not an image"), "is not a readable image"),
    (_truncated_png, "is not a readable image"),
    (lambda p: _png_header(p, 12000, 12000), "is 12000x12000 pixels, more than the 16777216"),
    (lambda p: _png_header(p, 20000, 20000), "is too large to decode"),
], ids=["empty", "text", "truncated", "12000x12000", "20000x20000-bomb"])
def test_image_folder_refuses_bad_files_by_name(tmp_path, make, message):
    folder, _ = _images(tmp_path, n=4, size=(60, 50))
    bad = folder / "dog" / "zz-bad.png"         # read last: the first image is fine
    make(bad)
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # no Pillow warning either: refused first
        with pytest.raises(ValueError, match=message) as info:
            src = ImageFolderSource(folder, size=(30, 25))
            src.read_rows(np.arange(src.n_rows))
    assert str(bad) in str(info.value)
    alone = tmp_path / "alone"                  # also as the first image, read at opening
    alone.mkdir()
    (alone / "a.png").write_bytes(bad.read_bytes())
    with pytest.raises(ValueError, match=message):
        ImageFolderSource(alone).read_rows(np.arange(1))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="VmHWM is Linux's")
def test_huge_images_are_refused_before_decoding(tmp_path):
    """Two black 12000 x 12000 PNGs (about 280 KB) decoded to 2.5 GB before the header
    check; a fit on the folder is now refused with the peak barely moving."""
    import subprocess
    import sys

    from PIL import Image

    folder = tmp_path / "big"
    folder.mkdir()
    for i in range(2):
        _png_header(folder / f"{i}.png", 12000, 12000)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / "0-small.png")
    code = ("import sys, aekit\n"
            "def peak():\n"
            "    return next(int(l.split()[1]) for l in open('/proc/self/status')\n"
            "                if l.startswith('VmHWM')) / 1024\n"
            "before = peak()\n"
            "try:\n"
            "    aekit.AE(max_iter=1).fit(sys.argv[1], memory_budget='1M')\n"
            "except ValueError as exc:\n"
            "    print(exc)\n"
            "print(peak() - before)\n")
    out = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True,
                         text=True, timeout=300)
    lines = out.stdout.splitlines()
    assert len(lines) == 2 and "12000x12000 pixels" in lines[0], out.stdout + out.stderr
    assert float(lines[1]) < 100, f"peak grew by {lines[1]} MB"


def _images(tmp_path, n=12, size=(6, 5), classes=("cat", "dog")):
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (n, *size), dtype=np.uint8)
    for i, p in enumerate(pixels):
        folder = tmp_path / "img" / classes[i % len(classes)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(p).save(folder / f"{i:03d}.png")
    return tmp_path / "img", pixels


def test_image_folder_source(tmp_path):
    folder, pixels = _images(tmp_path)
    src = ImageFolderSource(folder)
    assert (src.n_rows, src.row_shape) == (12, (6, 5))
    order = [int(p.stem) for p in src.files]        # sorted by class folder, then name
    np.testing.assert_allclose(src.read_rows(np.arange(12)), pixels[order] / 255, rtol=1e-6)
    np.testing.assert_array_equal(src.labels(), [int(i) % 2 for i in order])
    assert ImageFolderSource(folder, size=(4, 4)).read_rows(np.array([0])).shape == (1, 4, 4)
    from PIL import Image

    Image.fromarray(np.zeros((3, 3), np.uint8)).save(folder / "cat" / "odd.png")
    with pytest.raises(ValueError, match="pass size"):
        ImageFolderSource(folder).read_rows(np.arange(13))


def test_batch_source_takes_lists_and_functions_and_refuses_one_shot_iterators():
    batches = [np.full((3, 2), i, np.float32) for i in range(4)]
    assert BatchSource(batches).n_rows == 12
    assert BatchSource(lambda: iter(batches)).n_blocks == 4
    with pytest.raises(TypeError, match="one-shot"):
        BatchSource(b for b in batches)
    with pytest.raises(ValueError, match="same row shape"):
        BatchSource([np.zeros((2, 3)), np.zeros((2, 4))])
    shrinking = [batches, batches[:2]]
    src = BatchSource(lambda: iter(shrinking.pop(0) if len(shrinking) > 1 else shrinking[0]))
    with pytest.raises(ValueError, match="ended after 2 batches"):
        list(src.iter_blocks())


def test_memory_budget_parsing():
    assert sources.memory_budget("2G") == 2 * 2**30
    assert sources.memory_budget("1.5 MiB") == int(1.5 * 2**20)
    assert sources.memory_budget(None) > 0
    for bad in ("lots", "-1G", 0):
        with pytest.raises(ValueError):
            sources.memory_budget(bad)


# ------------------------------------------------------------------- order

def test_block_shuffle_sees_every_row_once_and_mixes_only_within_a_buffer(tmp_path):
    X = np.arange(1000, dtype=np.float32)[:, None]
    rows = streaming.StreamedRows(ParquetSource(_parquet(tmp_path, X, 100)), "cpu", 300)
    g = torch.Generator().manual_seed(0)
    first, second = rows.epoch_order(g).numpy(), rows.epoch_order(g).numpy()
    np.testing.assert_array_equal(np.sort(first), np.arange(1000))
    assert not np.array_equal(first, second)
    # buffers of 3 row groups (300 rows): each run of 300 rows comes from 3 groups
    for start in range(0, 900, 300):
        assert len(np.unique(first[start:start + 300] // 100)) == 3
    again = rows.epoch_order(torch.Generator().manual_seed(0)).numpy()
    np.testing.assert_array_equal(again, first)          # seeded: reproducible
    # the rows read for an order are the rows asked for
    np.testing.assert_array_equal(rows.take(first[:50])[:, 0], first[:50])


def test_an_iterable_keeps_its_batch_order():
    batches = [np.arange(i * 10, i * 10 + 10, dtype=np.float32)[:, None] for i in range(6)]
    rows = streaming.StreamedRows(BatchSource(batches), "cpu", 20)
    order = rows.epoch_order(torch.Generator().manual_seed(1)).numpy()
    assert [set(order[i:i + 20] // 20) for i in range(0, 60, 20)] == [{0}, {1}, {2}]


def test_prefetch_errors_reach_the_training_thread_and_stop_the_reader(tmp_path):
    class Failing(sources.ArraySource):
        def read_rows(self, rows):
            if rows.max() >= 150:
                raise OSError("disk gone")
            return super().read_rows(rows)

    rows = streaming.StreamedRows(Failing(np.zeros((200, 3), np.float32)), "cpu", 100)
    indices = list(torch.arange(200).split(50))
    with pytest.raises(OSError, match="disk gone"):
        list(rows.batches(indices))
    assert not [t for t in threading.enumerate() if t.name == "aekit-prefetch"]
    batches = rows.batches(indices)          # stopped after one batch: the reader ends too
    next(batches)
    batches.close()
    assert not [t for t in threading.enumerate() if t.name == "aekit-prefetch"]


# ---------------------------------------------------------------- training

@pytest.mark.parametrize("name, extra", [("ae", {}), ("vae", {}),
                                         ("vae", {"early_stopping": True}),
                                         ("vae", {"binarize": "dynamic",
                                                  "likelihood": "bernoulli"}),
                                         ("hvae", {"n_components": 3})])
def test_streamed_npy_trains_exactly_like_the_in_memory_array(tmp_path, digits, name, extra):
    X, _ = digits
    params = {**SMALL, "max_iter": 3, "likelihood": "bernoulli", **extra}
    memory = aekit.get_model(name, **params).fit(X)
    streamed = aekit.get_model(name, **params).fit(_npy(tmp_path, X), memory_budget=STREAM)
    assert_same_weights(weights(memory), weights(streamed))
    assert memory.history_["loss"] == streamed.history_["loss"]
    np.testing.assert_array_equal(streamed.transform(tmp_path / "x.npy"), memory.transform(X))


def test_streamed_image_rows_keep_their_shape(tmp_path, digits):
    X = digits[0].reshape(-1, 8, 8)
    model = aekit.get_model("ae", **{**SMALL, "max_iter": 1}).fit(_npy(tmp_path, X),
                                                                  memory_budget=STREAM)
    assert model.input_shape_ == (8, 8)
    assert model.reconstruct(X[:3]).shape == (3, 8, 8)


def test_parquet_fit_is_reproducible_and_close_to_in_memory(tmp_path, digits):
    X, _ = digits
    path = _parquet(tmp_path, X, rows_per_group=128)
    params = {**SMALL, "max_iter": 8, "likelihood": "bernoulli"}
    a = aekit.get_model("vae", **params).fit(path, memory_budget=20_000)
    b = aekit.get_model("vae", **params).fit(path, memory_budget=20_000)
    assert_same_weights(weights(a), weights(b))
    memory = aekit.get_model("vae", **params).fit(X)
    # another order of rows, the same data: the same quality within a nat or two
    assert abs(a.score(X) - memory.score(X)) < 2.0
    assert a.history_["loss"][-1] < a.history_["loss"][0] - 5


def test_fit_on_images_and_iterables(tmp_path):
    folder, pixels = _images(tmp_path, n=40, size=(8, 8))
    model = aekit.get_model("ae", **{**SMALL, "max_iter": 2}).fit(folder, memory_budget=STREAM)
    assert model.input_shape_ == (8, 8) and model.n_iter_ == 2
    batches = [pixels[i:i + 10].reshape(10, -1) for i in range(0, 40, 10)]
    model = aekit.get_model("ae", **{**SMALL, "max_iter": 2}).fit(BatchSource(batches))
    assert model.transform(BatchSource(batches)).shape == (40, 2)


def test_streamed_inference_matches_in_memory(tmp_path, fitted_vae, digits_test):
    X = digits_test[0]
    path = _npy(tmp_path, X)
    source = NpySource(path)
    big = streaming.resolve(source, STREAM)
    assert big is source                                       # streamed, not loaded
    chunked = streaming.CheckedSource(source, fitted_vae.input_shape_, "VAE")
    np.testing.assert_array_equal(fitted_vae._map_rows(chunked, fitted_vae._encode),
                                  fitted_vae.transform(X))
    np.testing.assert_array_equal(fitted_vae.score_samples(path), fitted_vae.score_samples(X))
    np.testing.assert_array_equal(fitted_vae.elbo(source), fitted_vae.elbo(X))


def test_streamed_bad_data_is_refused_before_training(tmp_path, digits):
    X = digits[0].copy()
    X[700, 3] = np.nan
    model = aekit.get_model("vae", **SMALL)
    with pytest.raises(ValueError, match="row 700"):
        model.fit(_npy(tmp_path, X, "nan.npy"), memory_budget=STREAM)
    assert not hasattr(model, "module_") and not hasattr(model, "input_shape_")
    with pytest.raises(ValueError, match="ranges over"):
        aekit.get_model("vae", likelihood="bernoulli").fit(
            _npy(tmp_path, digits[0] * 3, "big.npy"), memory_budget=STREAM)
    with pytest.raises(ValueError, match="early_stopping holds out random rows"):
        aekit.get_model("vae", early_stopping=True).fit(
            _parquet(tmp_path, digits[0]), memory_budget=STREAM)
    with pytest.raises(ValueError, match="cannot train on streamed data"):
        aekit.get_model("stacked_ae").fit(_npy(tmp_path, digits[0]), memory_budget=STREAM)
    narrow = NpySource(_npy(tmp_path, digits[0][:, :10], "narrow.npy"))
    with pytest.raises(ValueError, match=r"rows of shape \(10,\), but AE was fitted on rows "
                                         r"of shape \(64,\)"):
        streaming.CheckedSource(narrow, (64,), "AE")


def test_streamed_checkpoints_resume_and_refuse_another_order(tmp_path, digits):
    X = digits[0]
    path = _parquet(tmp_path, X, rows_per_group=128)
    params = {**SMALL, "max_iter": 4}
    full = aekit.get_model("vae", **params).fit(path, memory_budget=20_000)
    run = tmp_path / "run"
    aekit.get_model("vae", **{**params, "max_iter": 2}).fit(path, memory_budget=20_000,
                                                             checkpoint_dir=run)
    resumed = aekit.get_model("vae", **params).fit(path, memory_budget=20_000,
                                                   checkpoint_dir=run, resume=True)
    assert_same_weights(weights(full), weights(resumed))
    with pytest.raises(ValueError, match="order"):
        aekit.get_model("vae", **params).fit(path, memory_budget=60_000, checkpoint_dir=run,
                                             resume=True)


# --------------------------------------------------------------------- CLI

def test_cli_streams_fit_transform_and_score(tmp_path, digits, capsys):
    X, _ = digits
    data = str(_npy(tmp_path, X))
    model = str(tmp_path / "m.safetensors")
    assert main(["fit", "vae", "--data", data, "-o", model, "-q", "--memory-budget", "1K",
                 "--set", "hidden_layer_sizes=(16,)", "--set", "max_iter=2",
                 "--set", "random_state=0"]) == 0
    fitted = aekit.load(model)
    for suffix in (".npy", ".parquet"):
        out = tmp_path / f"codes{suffix}"
        assert main(["transform", model, "--data", data, "-o", str(out),
                     "--memory-budget", "1K"]) == 0
        codes = np.load(out) if suffix == ".npy" else np.stack(
            [c.to_numpy() for c in pq.read_table(out).columns], axis=1)
        np.testing.assert_array_equal(codes, fitted.transform(X))
    assert main(["score", model, "--data", data, "--memory-budget", "1K", "--json",
                 "-o", str(tmp_path / "ll.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "ll.npy")[:, 0], fitted.score_samples(X))
    assert main(["transform", model, "--data", data, "-o", str(tmp_path / "c.txt")]) == 2
    assert "should end in .npy or .parquet or .csv" in capsys.readouterr().err
    # streamed rows written to .csv chunk by chunk
    assert main(["transform", model, "--data", data, "--memory-budget", "1K", "-o",
                 str(tmp_path / "c.csv")]) == 0
    codes = np.loadtxt(tmp_path / "c.csv", delimiter=",", skiprows=1, dtype=np.float32)
    np.testing.assert_allclose(codes, fitted.transform(X), rtol=1e-6)
    assert main(["evaluate", model, "--data", data, "--memory-budget", "1K"]) == 2
    assert "reads its data into memory" in capsys.readouterr().err


def test_write_rows_is_atomic(tmp_path):
    def chunks():
        yield np.zeros((3, 2))
        raise OSError("interrupted")

    with pytest.raises(OSError):
        streaming.write_rows(tmp_path / "out.npy", chunks(), 6)
    assert list(tmp_path.iterdir()) == []


# -------------------------------------------------------------- peak memory

PEAK_SCRIPT = """
import resource, sys, numpy as np, torch
torch.set_num_threads(1)
import aekit
path, budget = sys.argv[1], sys.argv[2]
model = aekit.get_model("ae", n_components=2, hidden_layer_sizes=(16,), max_iter=1,
                        batch_size=512, random_state=0, device="cpu")
model.fit(np.zeros((2, 8), np.float32))          # warm up torch's allocations
open("/proc/self/clear_refs", "w").write("5")    # reset the peak to the current size
X = np.load(path, mmap_mode="r")
print("start", next(int(l.split()[1]) * 1024 for l in open("/proc/self/status")
                    if l.startswith("VmRSS")))
model.fit(X, memory_budget=int(budget) if budget != "none" else None)
for line in open("/proc/self/status"):
    if line.startswith("VmHWM"):
        print("peak", int(line.split()[1]) * 1024)
print("loss", model.history_["loss"][0])
"""


def _peak(path, budget):
    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(path), budget],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    values = dict(line.split() for line in out.stdout.splitlines())
    return int(values["peak"]) - int(values["start"]), float(values["loss"])


def _big_npy(path, n, d=800):
    X = np.lib.format.open_memmap(path, "w+", np.float32, (n, d))
    for start in range(0, n, 5000):
        X[start:start + 5000] = np.random.default_rng(start).random((len(X[start:start + 5000]),
                                                                       d), np.float32)
    X.flush()
    return n * d * 4


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
def test_streaming_keeps_peak_memory_bounded(tmp_path):
    """Memory-mapped arrays of 64 and 256 MB, 4-16x a 16 MB budget: the peak resident
    memory of a streamed fit does not grow with the data (measured), while the in-memory
    fit's grows by the whole array; the streamed loss equals the in-memory one."""
    small, large = _big_npy(tmp_path / "small.npy", 20_000), _big_npy(tmp_path / "large.npy",
                                                                      80_000)
    budget = str(16 * 2**20)
    # the process's own overhead varies by tens of MB from run to run (allocator caching,
    # pages of the mapped file kept resident): the smaller of two runs of each is the
    # measurement, since that noise only adds
    (small_growth, small_loss), (large_growth, _) = (
        min(_peak(tmp_path / name, budget), _peak(tmp_path / name, budget))
        for name in ("small.npy", "large.npy"))
    memory_growth, memory_loss = _peak(tmp_path / "small.npy", "none")
    print(f"peak growth [MiB]: streamed {small_growth / 2**20:.1f} ({small / 2**20:.0f} MiB "
          f"of data), {large_growth / 2**20:.1f} ({large / 2**20:.0f} MiB); in memory "
          f"{memory_growth / 2**20:.1f} ({small / 2**20:.0f} MiB)")
    # flat in the data size: 4x the data adds far less than the 192 MB held in memory would
    # (the fixed overhead itself varies by about 30 MB between runs: allocator caching)
    assert large_growth - small_growth < 0.25 * (large - small)
    assert large_growth < large / 2
    assert memory_growth > small            # the same measurement sees data held in memory
    assert small_loss == memory_loss
