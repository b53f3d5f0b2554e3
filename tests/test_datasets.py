"""Built-in datasets, the IDX reader, where datasets are looked for, checked downloads
(over file:// URLs, never the network) and the .npy/.npz/.csv readers."""

import dataclasses
import gzip
import hashlib
import http.client
import os
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from aekit.data import datasets
from aekit.data.datasets import RemoteFile

_REAL_URLOPEN = urllib.request.urlopen


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No test here may reach the network or the user's cache; file:// URLs still work."""

    def urlopen(url, *args, **kwargs):
        if not str(url).startswith("file:"):
            raise AssertionError(f"a test tried to download {url}")
        return _REAL_URLOPEN(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    monkeypatch.delenv("AEKIT_DATA", raising=False)
    monkeypatch.setenv("AEKIT_CACHE", str(tmp_path / "cache"))


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file as LeCun describes it: magic (0, 0, type, ndim), big-endian dims, data."""
    codes = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype("i2"): 0x0B,
             np.dtype("i4"): 0x0C, np.dtype("f4"): 0x0D, np.dtype("f8"): 0x0E}
    code = codes[array.dtype.newbyteorder("=")]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files_in(folder: Path) -> list[str]:
    """Every entry of ``folder``, hidden temporary files included."""
    return sorted(os.listdir(folder)) if folder.exists() else []


# ----------------------------------------------------------------- digits

@pytest.mark.parametrize("split, n_rows", [("train", 1437), ("test", 360), ("all", 1797)])
def test_digits_splits_shapes_and_range(split, n_rows):
    X, y = datasets.load("digits", split=split)
    assert X.shape == (n_rows, 64)
    assert X.dtype == np.float32
    assert X.min() >= 0.0 and X.max() <= 1.0
    assert y.shape == (n_rows,) and y.dtype == np.int64
    assert set(np.unique(y)) == set(range(10))


def test_digits_train_and_test_partition_all():
    X_tr, y_tr = datasets.load("digits", split="train")
    X_te, y_te = datasets.load("digits", split="test")
    X_all, y_all = datasets.load("digits", split="all")
    assert len(X_tr) + len(X_te) == len(X_all)

    def rows(X, y):
        return sorted(map(tuple, np.column_stack([X, y]).tolist()))

    # same rows with the same labels, none left out or counted twice
    assert rows(np.concatenate([X_tr, X_te]), np.concatenate([y_tr, y_te])) == rows(X_all, y_all)


def test_digits_split_is_fixed():
    X1, y1 = datasets.load("digits", split="test")
    X2, y2 = datasets.load("digits", split="test")
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)


def test_digits_flatten_false_keeps_images():
    X, y = datasets.load("digits", split="test", flatten=False)
    assert X.shape == (360, 8, 8)
    np.testing.assert_array_equal(X.reshape(360, 64), datasets.load("digits", split="test")[0])


def test_unknown_split_is_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown split 'validation'.*train, test, all"):
        datasets.load("digits", split="validation")


def test_unknown_name_is_refused_with_the_known_datasets():
    with pytest.raises(ValueError, match=r"'cifar-11' is neither a registered dataset.*digits"):
        datasets.load("cifar-11")


def test_info_of_unknown_dataset_names_the_known_ones():
    assert datasets.info("mnist").image_shape == (28, 28)
    with pytest.raises(ValueError, match="known datasets: digits"):
        datasets.info("nope")


# -------------------------------------------------------------------- IDX

@pytest.mark.parametrize("suffix", [".gz", ""], ids=["gz", "raw"])
def test_idx_images_round_trip_exactly(tmp_path, suffix, rng):
    images = rng.integers(0, 256, size=(7, 5, 4), dtype=np.uint8)
    path = write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images)
    out = datasets.read_idx(path)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, images)


def test_idx_labels(tmp_path):
    labels = np.array([3, 1, 4, 1, 5, 9], dtype=np.uint8)
    out = datasets.read_idx(write_idx(tmp_path / "labels-idx1-ubyte.gz", labels))
    assert out.shape == (6,)
    np.testing.assert_array_equal(out, labels)


@pytest.mark.parametrize("dtype", ["i1", "i2", "i4", "f4", "f8"])
def test_idx_multibyte_types_come_back_in_native_byte_order(tmp_path, dtype):
    values = np.array([[-3, 0], [7, 100]], dtype=dtype)
    out = datasets.read_idx(write_idx(tmp_path / "x.idx", values))
    assert out.dtype == np.dtype(dtype)          # native order: arithmetic just works
    np.testing.assert_array_equal(out, values)


def test_idx_truncated_data_is_refused(tmp_path, rng):
    data = idx_bytes(rng.integers(0, 256, size=(4, 3, 3), dtype=np.uint8))
    path = tmp_path / "short-ubyte"
    path.write_bytes(data[:-5])
    with pytest.raises(ValueError, match=r"truncated or corrupt.*\(4, 3, 3\).*31 bytes"):
        datasets.read_idx(path)


def test_idx_truncated_header_is_refused(tmp_path):
    path = tmp_path / "header-ubyte"
    path.write_bytes(bytes([0, 0, 0x08, 3]) + b"\x00\x00\x00\x04")   # 1 of 3 dims
    with pytest.raises(ValueError, match="header is incomplete"):
        datasets.read_idx(path)


def test_idx_extra_bytes_are_refused(tmp_path):
    path = tmp_path / "long-ubyte"
    path.write_bytes(idx_bytes(np.zeros((2, 2), np.uint8)) + b"\x00")
    with pytest.raises(ValueError, match="truncated or corrupt"):
        datasets.read_idx(path)


@pytest.mark.parametrize("start", [b"\x01\x00\x08\x01", b"\x00\x00\x42\x01", b"\x89PNG"])
def test_idx_bad_magic_is_refused(tmp_path, start):
    path = tmp_path / "bad-ubyte"
    path.write_bytes(start + b"\x00\x00\x00\x01" + b"\x00")
    with pytest.raises(ValueError, match="not an IDX file"):
        datasets.read_idx(path)


def test_idx_garbage_gz_is_refused(tmp_path, rng):
    path = tmp_path / "garbage-ubyte.gz"
    path.write_bytes(rng.integers(0, 256, size=500, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="cannot read IDX file"):
        datasets.read_idx(path)


def test_idx_gz_with_corrupt_compressed_data_is_refused(tmp_path, rng):
    """A valid gzip header followed by damaged deflate data (a broken download)."""
    good = gzip.compress(idx_bytes(rng.integers(0, 256, size=(30, 10, 10), dtype=np.uint8)))
    path = tmp_path / "corrupt-ubyte.gz"
    path.write_bytes(good[:10] + rng.integers(0, 256, size=len(good) - 10, dtype=np.uint8)
                     .tobytes())
    with pytest.raises(ValueError, match="cannot read IDX file"):
        datasets.read_idx(path)


def test_idx_file_through_load_is_scaled(tmp_path, rng):
    images = rng.integers(0, 256, size=(3, 4, 4), dtype=np.uint8)
    path = write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    X, y = datasets.load(path)
    assert y is None
    np.testing.assert_allclose(X, images.reshape(3, 16) / 255.0, rtol=1e-6)
    assert datasets.load(path, flatten=False)[0].shape == (3, 4, 4)


# --------------------------------------------------- where datasets are found

def test_search_path_order(monkeypatch, tmp_path):
    monkeypatch.setenv("AEKIT_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("AEKIT_CACHE", str(tmp_path / "cache"))
    assert datasets.search_path("mnist") == [
        tmp_path / "data" / "mnist",
        Path("/usr/share/datasets/mnist"),
        tmp_path / "cache" / "mnist",
    ]
    monkeypatch.delenv("AEKIT_DATA")
    assert datasets.search_path("mnist") == [
        Path("/usr/share/datasets/mnist"), tmp_path / "cache" / "mnist"]


def test_cache_defaults_to_home(monkeypatch, tmp_path):
    monkeypatch.delenv("AEKIT_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert datasets.cache_dir() == tmp_path / ".cache" / "aekit"


def make_idx_dataset(folder: Path, name: str, rng, n_train: int = 5, n_test: int = 3):
    """The four files of ``name`` (named as in INFO) holding small random images."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images_file, labels_file = datasets.INFO[name].files[split]
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_idx(folder / images_file.name, images)
        write_idx(folder / labels_file.name, labels)
        arrays[split] = (images, labels)
    return arrays


def test_aekit_data_is_used_first(monkeypatch, tmp_path, rng):
    arrays = make_idx_dataset(tmp_path / "data" / "fashion-mnist", "fashion-mnist", rng)
    monkeypatch.setenv("AEKIT_DATA", str(tmp_path / "data"))
    assert datasets.locate("fashion-mnist") == tmp_path / "data" / "fashion-mnist"

    for split in ("train", "test"):
        images, labels = arrays[split]
        X, y = datasets.load("fashion-mnist", split=split)
        assert X.dtype == np.float32 and y.dtype == np.int64
        np.testing.assert_allclose(X, images.reshape(len(images), -1) / 255.0, rtol=1e-6)
        np.testing.assert_array_equal(y, labels)

    X, y = datasets.load("fashion-mnist", split="all", flatten=False)
    assert X.shape == (8, 28, 28)
    np.testing.assert_allclose(X[:5], arrays["train"][0] / 255.0, rtol=1e-6)
    np.testing.assert_allclose(X[5:], arrays["test"][0] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, np.concatenate([arrays["train"][1], arrays["test"][1]]))
    assert files_in(tmp_path / "cache") == []                 # nothing copied or fetched


def test_incomplete_folder_is_skipped(monkeypatch, tmp_path, rng):
    make_idx_dataset(tmp_path / "data" / "fashion-mnist", "fashion-mnist", rng)
    make_idx_dataset(tmp_path / "cache" / "fashion-mnist", "fashion-mnist", rng)
    test_images = datasets.INFO["fashion-mnist"].files["test"][0].name
    (tmp_path / "data" / "fashion-mnist" / test_images).unlink()
    monkeypatch.setenv("AEKIT_DATA", str(tmp_path / "data"))
    # the Debian folder may exist on this machine; keep it out of the way
    monkeypatch.setattr(datasets, "search_path", lambda name: [
        tmp_path / "data" / name, datasets.cache_dir() / name])
    assert datasets.locate("fashion-mnist") == tmp_path / "cache" / "fashion-mnist"


# ------------------------------------------------------- checked downloads

@pytest.fixture
def mirror(tmp_path, rng, monkeypatch):
    """A fake "mnist" served from a file:// folder: (info, arrays, mirror folder, cache).

    Nothing real can be found: the search path only holds empty folders."""
    folder = tmp_path / "mirror"
    arrays = make_idx_dataset(folder, "mnist", rng, n_train=6, n_test=2)
    files = {split: tuple(RemoteFile(f.name, sha256=sha256((folder / f.name).read_bytes()))
                          for f in pair)
             for split, pair in datasets.INFO["mnist"].files.items()}
    info = dataclasses.replace(datasets.INFO["mnist"], urls=(folder.as_uri() + "/",), files=files)
    monkeypatch.setitem(datasets.INFO, "mnist", info)
    monkeypatch.setenv("AEKIT_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(datasets, "search_path", lambda name: [
        tmp_path / "data" / name, datasets.cache_dir() / name])
    return info, arrays, folder, tmp_path / "cache" / "mnist"


def test_download_fills_the_cache(mirror):
    info, arrays, _, cache = mirror
    X, y = datasets.load("mnist", split="all")
    images = np.concatenate([arrays["train"][0], arrays["test"][0]])
    np.testing.assert_allclose(X, images.reshape(8, -1) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, np.concatenate([arrays["train"][1], arrays["test"][1]]))
    assert files_in(cache) == sorted(f.name for pair in info.files.values() for f in pair)
    assert datasets.locate("mnist") == cache                 # the next load reads the cache


def test_download_of_one_split_fetches_only_its_files(mirror):
    info, _, _, cache = mirror
    X, _ = datasets.load("mnist", split="test")
    assert len(X) == 2
    assert files_in(cache) == sorted(f.name for f in info.files["test"])


def test_wrong_checksum_is_refused_and_leaves_nothing(mirror, monkeypatch):
    info, _, _, cache = mirror
    bad = dict(info.files)
    bad["train"] = (RemoteFile(info.files["train"][0].name, sha256="0" * 64),
                    info.files["train"][1])
    monkeypatch.setitem(datasets.INFO, "mnist", dataclasses.replace(info, files=bad))
    with pytest.raises(FileNotFoundError, match=r"could not be downloaded.*checksum mismatch"):
        datasets.load("mnist", split="train")
    assert files_in(cache) == []


def test_missing_file_on_every_mirror_says_where_to_put_it(mirror, monkeypatch, tmp_path):
    info, _, _, cache = mirror
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setitem(datasets.INFO, "mnist",
                        dataclasses.replace(info, urls=(empty.as_uri() + "/",)))
    with pytest.raises(FileNotFoundError, match=r"\$AEKIT_DATA/mnist"):
        datasets.load("mnist")
    assert files_in(cache) == []


def test_content_sha256_accepts_a_recompressed_file(mirror, monkeypatch):
    """A mirror that re-compresses the files serves other bytes with the same content."""
    info, arrays, folder, _ = mirror
    files = {}
    for split, pair in info.files.items():
        checked = []
        for f in pair:
            content = gzip.decompress((folder / f.name).read_bytes())
            (folder / f.name).write_bytes(gzip.compress(content, compresslevel=1, mtime=12345))
            checked.append(RemoteFile(f.name, sha256=f.sha256, content_sha256=sha256(content)))
        files[split] = tuple(checked)
    monkeypatch.setitem(datasets.INFO, "mnist", dataclasses.replace(info, files=files))
    X, y = datasets.load("mnist", split="test")
    np.testing.assert_array_equal(y, arrays["test"][1])


def test_wrong_content_sha256_is_refused(mirror, monkeypatch):
    info, _, _, cache = mirror
    files = {split: tuple(RemoteFile(f.name, content_sha256="f" * 64) for f in pair)
             for split, pair in info.files.items()}
    monkeypatch.setitem(datasets.INFO, "mnist", dataclasses.replace(info, files=files))
    with pytest.raises(FileNotFoundError, match="checksum mismatch"):
        datasets.load("mnist", split="test")
    assert files_in(cache) == []


def test_corrupt_mirror_falls_back_to_the_next(mirror, monkeypatch, tmp_path, rng):
    """A damaged .gz on the first mirror (checked by content) must not stop the download."""
    info, arrays, folder, cache = mirror
    broken = tmp_path / "broken"
    broken.mkdir()
    files = {}
    for split, pair in info.files.items():
        checked = []
        for f in pair:
            data = (folder / f.name).read_bytes()
            (broken / f.name).write_bytes(
                data[:10] + rng.integers(0, 256, size=len(data) + 200, dtype=np.uint8).tobytes())
            checked.append(RemoteFile(f.name, content_sha256=sha256(gzip.decompress(data))))
        files[split] = tuple(checked)
    urls = (broken.as_uri() + "/", folder.as_uri() + "/")
    monkeypatch.setitem(datasets.INFO, "mnist", dataclasses.replace(info, urls=urls, files=files))
    X, y = datasets.load("mnist", split="test")
    np.testing.assert_array_equal(y, arrays["test"][1])
    assert files_in(cache) == sorted(f.name for f in files["test"])


def test_download_cut_short_falls_back_to_the_next(mirror, monkeypatch):
    info, arrays, folder, cache = mirror

    class CutShort:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self, *args):
            raise http.client.IncompleteRead(b"partial", 100)

    file_urlopen = urllib.request.urlopen

    def urlopen(url, *args, **kwargs):
        if url.startswith("https://flaky.example/"):
            return CutShort()
        return file_urlopen(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    urls = ("https://flaky.example/", folder.as_uri() + "/")
    monkeypatch.setitem(datasets.INFO, "mnist", dataclasses.replace(info, urls=urls))
    _, y = datasets.load("mnist", split="test")
    np.testing.assert_array_equal(y, arrays["test"][1])
    assert files_in(cache) == sorted(f.name for f in info.files["test"])


# ----------------------------------------------------------- file readers

def test_npy_float_is_kept_as_is(tmp_path):
    values = np.array([[0.5, -2.0, 3.25], [10.0, 0.0, 1.0]])
    np.save(tmp_path / "x.npy", values)
    X, y = datasets.load(tmp_path / "x.npy")
    assert X.dtype == np.float32 and y is None
    np.testing.assert_array_equal(X, values.astype(np.float32))


def test_npy_uint8_is_scaled(tmp_path):
    values = np.array([[0, 51, 255], [102, 204, 0]], dtype=np.uint8)
    np.save(tmp_path / "x.npy", values)
    X, _ = datasets.load(str(tmp_path / "x.npy"))
    np.testing.assert_allclose(X, values / 255.0, rtol=1e-6)
    assert X.max() == 1.0


def test_npy_images_keep_their_shape_unless_flattened(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 3, 5), np.float32))
    assert datasets.load(tmp_path / "x.npy")[0].shape == (4, 15)
    assert datasets.load(tmp_path / "x.npy", flatten=False)[0].shape == (4, 3, 5)


def test_npz_with_x_and_y(tmp_path):
    X_in = np.arange(12, dtype=np.float32).reshape(4, 3) / 12
    np.savez(tmp_path / "d.npz", y=np.array([1, 0, 1, 2]), X=X_in)
    X, y = datasets.load(tmp_path / "d.npz")
    np.testing.assert_array_equal(X, X_in)
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, [1, 0, 1, 2])


def test_csv_without_header(tmp_path):
    (tmp_path / "d.csv").write_text("0.1,0.2,0.3\n0.4,0.5,0.6\n")
    X, y = datasets.load(tmp_path / "d.csv")
    assert y is None
    np.testing.assert_allclose(X, [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], rtol=1e-6)


def test_csv_with_header_and_label_column(tmp_path):
    (tmp_path / "d.csv").write_text("a, Label ,b\n0.1,3,0.2\n0.4,7,0.5\n")
    X, y = datasets.load(tmp_path / "d.csv")
    np.testing.assert_allclose(X, [[0.1, 0.2], [0.4, 0.5]], rtol=1e-6)
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, [3, 7])


def test_csv_with_header_without_label(tmp_path):
    (tmp_path / "d.csv").write_text("a,b\n1,2\n3,4\n")
    X, y = datasets.load(tmp_path / "d.csv")
    assert y is None
    np.testing.assert_array_equal(X, [[1, 2], [3, 4]])


@pytest.mark.parametrize("text, match", [
    ("1,2,3\n4,5\n", "rows of different lengths"),
    ("a,b\n1,2,3\n", "rows of different lengths"),
    ("1,2\n3,x\n", r"column .x1. holds text \(.x.\)"),
    ("a,b,label\n", "header but no data rows"),
    ("", "is empty"),
], ids=["ragged", "ragged-header", "non-numeric", "header-only", "empty"])
def test_bad_csv_is_refused(tmp_path, text, match):
    (tmp_path / "d.csv").write_text(text)
    with pytest.raises(ValueError, match=match):
        datasets.load(tmp_path / "d.csv")


def test_unknown_extension_is_refused(tmp_path):
    (tmp_path / "d.txt").write_text("1 2 3\n")
    with pytest.raises(ValueError, match=r"unknown file type '\.txt'.*\.npy, \.npz, \.csv"):
        datasets.load(tmp_path / "d.txt")


def test_npy_strings_are_refused(tmp_path):
    np.save(tmp_path / "s.npy", np.array([["a", "b"]]))
    with pytest.raises(ValueError, match="aekit needs numbers"):
        datasets.load(tmp_path / "s.npy")


class _Marker:
    """Unpickling this creates a folder: proof that pickle ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_pickled_object_arrays_are_refused_without_unpickling(tmp_path, suffix):
    marker = tmp_path / "unpickled"
    array = np.array([_Marker(str(marker)), 1.0], dtype=object)
    path = tmp_path / f"evil{suffix}"
    if suffix == ".npy":
        np.save(path, array, allow_pickle=True)
    else:
        np.savez(path, X=array)
    with pytest.raises(ValueError, match="pickle"):
        datasets.load(path)
    assert not marker.exists()


# ------------------------------------------------ bombs and degenerate files (issue #21)

def _npy_header_only(path: Path, shape, descr="<f4") -> Path:
    """A .npy file whose header declares ``shape`` (and no data follows)."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": descr, "fortran_order": False,
                                                 "shape": shape})
    return path


def test_idx_gz_header_is_checked_before_the_data_are_decompressed(tmp_path):
    """A few KB of .gz declaring 2 GB: refused by the header, nothing decompressed."""
    path = tmp_path / "bomb-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(bytes([0, 0, 8, 2]) + np.asarray([100_000, 20_000], ">u4").tobytes())
        f.write(bytes(4 << 20))
    with pytest.raises(ValueError, match=r"declares an array of shape \(100000, 20000\) "
                       r"\(2000000000 bytes\), more than the memory budget of 1048576"):
        datasets.load(path, memory_budget="1M")
    zeros = tmp_path / "zeros-ubyte.gz"
    with gzip.open(zeros, "wb", compresslevel=1) as f:
        f.write(bytes(4 << 20))
    with pytest.raises(ValueError, match="bad magic number"):
        datasets.read_idx(zeros)


PEAK = """
import sys
from aekit.data import datasets

def peak_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024

before = peak_mb()
try:
    datasets.read_idx(sys.argv[1])
except ValueError as exc:
    print(exc)
print(peak_mb() - before)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="VmHWM is Linux's")
def test_idx_gz_with_a_small_header_and_a_huge_tail_is_read_within_its_size(tmp_path):
    """200 MB of zeros after a valid 10x10 header (200 KB of .gz): before the header was
    read first, the whole tail was decompressed into memory."""
    import subprocess
    import sys

    path = tmp_path / "tail-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(bytes([0, 0, 8, 2]) + np.asarray([10, 10], ">u4").tobytes() + bytes(100))
        for _ in range(200):
            f.write(bytes(1 << 20))
    (tmp_path / "peak.py").write_text(PEAK)
    out = subprocess.run([sys.executable, str(tmp_path / "peak.py"), str(path)],
                         capture_output=True, text=True, timeout=300)
    lines = out.stdout.splitlines()
    assert len(lines) == 2 and "found more" in lines[0], out.stdout + out.stderr
    assert float(lines[1]) < 50, f"peak grew by {lines[1]} MB"


def test_npz_shapes_are_checked_before_decompressing(tmp_path):
    """A compressed member declaring 400 MB is refused from its header."""
    import zipfile

    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf, \
            zf.open("X.npy", "w", force_zip64=True) as member:
        np.lib.format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False,
                                                      "shape": (100_000, 1000)})
        for _ in range(8):
            member.write(bytes(1 << 20))
    assert path.stat().st_size < 100_000
    with pytest.raises(ValueError, match=r"array 'X' of shape \(100000, 1000\) and dtype "
                       r"float32 takes 400000000 bytes, more than the memory budget"):
        datasets.load(path, memory_budget="100M")


def test_npy_over_the_memory_budget_is_refused_from_its_header(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((100, 100)))
    with pytest.raises(ValueError, match="80000 bytes, more than the memory budget of 10240"):
        datasets.load(tmp_path / "x.npy", memory_budget="10K")
    assert datasets.load(tmp_path / "x.npy", memory_budget="1M")[0].shape == (100, 100)


@pytest.mark.parametrize("make, match", [
    (lambda p: _npy_header_only(p, (2**62, 0)), r"rows of shape \(0,\), with no values"),
    (lambda p: np.save(p, np.zeros((5, 0), np.float32)), r"rows of shape \(0,\), with no values"),
    (lambda p: np.save(p, np.zeros((0, 4), np.float32)), "holds no rows"),
    (lambda p: np.save(p, np.zeros((3, 4, 0), np.float32)), r"rows of shape \(4, 0\)"),
], ids=["2**62-by-0", "5-by-0", "0-by-4", "3-by-4-by-0"])
def test_npy_without_values_is_refused_naming_the_file(tmp_path, make, match):
    path = tmp_path / "x.npy"
    make(path)
    with pytest.raises(ValueError, match=match) as info:
        datasets.load(path)
    assert str(path) in str(info.value)


def test_non_utf8_csv_is_refused_naming_the_file_and_byte(tmp_path):
    (tmp_path / "d.csv").write_bytes(b"a,b\n1,\xff\n")
    with pytest.raises(ValueError, match=r"d.csv' is not UTF-8 text \(byte 0xff at offset 6\)"):
        datasets.load(tmp_path / "d.csv")
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbfa,label\n0.5,1\n")     # Excel's BOM
    X, y = datasets.load(tmp_path / "bom.csv")
    assert X.tolist() == [[0.5]] and y.tolist() == [1]


def test_a_symlink_to_a_device_is_not_reported_missing(tmp_path):
    (tmp_path / "zero.npy").symlink_to("/dev/zero")
    with pytest.raises(ValueError, match="zero.npy' is a character device, through the symlink"):
        datasets.read_file(tmp_path / "zero.npy")
    (tmp_path / "gone.npy").symlink_to(tmp_path / "nowhere.npy")
    with pytest.raises(FileNotFoundError, match="a symlink to .*nowhere.npy', which does not"):
        datasets.read_file(tmp_path / "gone.npy")
