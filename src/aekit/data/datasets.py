"""Built-in datasets and file readers.

``load(name_or_path, split="train")`` returns ``(X, y)`` with X float32 in [0, 1] for the
registered image datasets (flattened rows unless ``flatten=False``; the image shape is in
``info(name).image_shape``). Files are read as they are, except that integer arrays
(e.g. uint8 images) are scaled to [0, 1] by 1/255.

Registered datasets are found, in order, in ``$AEKIT_DATA/<name>``, in
``/usr/share/datasets/<name>`` (Debian's packages, e.g. ``apt-get install
dataset-fashion-mnist``), in the cache folder (``$AEKIT_CACHE`` or ``~/.cache/aekit``),
and otherwise downloaded there from their official source with SHA-256 checks.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import http.client
import io
import math
import os
import shutil
import urllib.request
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from aekit._registry import Registry
from aekit.data.sources.source import LABEL_COLUMNS, check_file
from aekit.data.sources.source import memory_budget as budget_bytes
from aekit.exceptions import InputError
from aekit.runtime import atomic_write

DATASETS: Registry = Registry("dataset")
SPLITS = ("train", "test", "all")

#: IDX element types (Y. LeCun's format description for the MNIST files).
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass(frozen=True)
class RemoteFile:
    """A file of a dataset and how to check it: SHA-256 of the file as served and/or of
    its decompressed content (which survives re-compression by a mirror)."""

    name: str
    sha256: str | None = None
    content_sha256: str | None = None


@dataclass(frozen=True)
class DatasetInfo:
    """What ``aekit datasets`` shows and what plots need to know about a dataset."""

    name: str
    description: str
    image_shape: tuple[int, ...] | None
    n_classes: int
    urls: tuple[str, ...] = ()
    files: dict[str, tuple[RemoteFile, RemoteFile]] = field(default_factory=dict)


_MNIST_FILES = {
    "train": (RemoteFile("train-images-idx3-ubyte.gz",
                         "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
              RemoteFile("train-labels-idx1-ubyte.gz",
                         "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c")),
    "test": (RemoteFile("t10k-images-idx3-ubyte.gz",
                        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
             RemoteFile("t10k-labels-idx1-ubyte.gz",
                        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6")),
}
_FASHION_FILES = {
    "train": (RemoteFile("train-images-idx3-ubyte.gz", content_sha256=(
                  "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888")),
              RemoteFile("train-labels-idx1-ubyte.gz", content_sha256=(
                  "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"))),
    "test": (RemoteFile("t10k-images-idx3-ubyte.gz", content_sha256=(
                 "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b")),
             RemoteFile("t10k-labels-idx1-ubyte.gz", content_sha256=(
                 "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"))),
}

INFO: dict[str, DatasetInfo] = {
    "digits": DatasetInfo("digits", "8x8 handwritten digits shipped with scikit-learn "
                          "(1797 images, 17 grey levels; offline default)", (8, 8), 10),
    "mnist": DatasetInfo("mnist", "28x28 handwritten digits, 60k train / 10k test",
                         (28, 28), 10, ("https://ossci-datasets.s3.amazonaws.com/mnist/",),
                         _MNIST_FILES),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", "28x28 Zalando article images, 60k train / 10k test", (28, 28), 10,
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",), _FASHION_FILES),
}


def info(name: str) -> DatasetInfo:
    """Description, image shape and class count of a registered dataset."""
    DATASETS.lookup(name)
    return INFO[name]


def list_datasets() -> list[str]:
    return DATASETS.names()


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    return split


def load(name: str | os.PathLike, split: str = "train", flatten: bool = True,
         memory_budget: int | str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Load a registered dataset or a data file.

    Parameters
    ----------
    name : str or path-like
        A registered name (see :func:`list_datasets`) or a path to a .npy, .npz, .csv or
        IDX (.gz or raw) file.
    split : {"train", "test", "all"}, default="train"
        For registered datasets. "digits" has no official split: aekit uses a fixed,
        stratified 80/20 split (seed 0).
    flatten : bool, default=True
        Return images as flat rows ``(n, H*W)``; False keeps ``(n, H, W)``.
    memory_budget : int or str, optional
        Bytes a file's array may take (e.g. ``"2G"``; default: a quarter of this machine's
        memory); a file declaring more is refused before it is read or decompressed.

    Returns
    -------
    X : ndarray of float32
    y : ndarray of int64, or None when the source has no labels

    Examples
    --------
    >>> from aekit import datasets
    >>> X, y = datasets.load("digits")
    >>> X.shape, X.dtype, float(X.max()) <= 1.0
    ((1437, 64), dtype('float32'), True)
    """
    if isinstance(name, str) and name in DATASETS:
        X, y = DATASETS.lookup(name)(_check_split(split))
    elif Path(name).exists():
        X, y = read_file(name, memory_budget)
    else:
        known = ", ".join(list_datasets())
        raise InputError(f"{str(name)!r} is neither a registered dataset ({known}) nor an "
                         "existing file")
    if flatten:
        X = X.reshape(len(X), -1)
    return X, y


@DATASETS.register("digits")
def _load_digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    X = (bunch.images / 16.0).astype(np.float32)           # (1797, 8, 8) in [0, 1]
    y = bunch.target.astype(np.int64)
    if split == "all":
        return X, y
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    return (X_tr, y_tr) if split == "train" else (X_te, y_te)


def _idx_loader(name: str):
    def load_split(split: str) -> tuple[np.ndarray, np.ndarray]:
        parts = ["train", "test"] if split == "all" else [split]
        arrays = [_load_idx_split(name, part) for part in parts]
        return (np.concatenate([a[0] for a in arrays]), np.concatenate([a[1] for a in arrays]))

    return load_split


DATASETS.register("mnist")(_idx_loader("mnist"))
DATASETS.register("fashion-mnist")(_idx_loader("fashion-mnist"))


def binarize(X: np.ndarray, random_state: int = 0) -> np.ndarray:
    """A fixed binarization of grey levels in [0, 1]: each value becomes 1 with that
    probability (the test-set half of the dynamically binarized protocol).

    Examples
    --------
    >>> import numpy as np
    >>> b = binarize(np.full((1000, 2), 0.25, dtype=np.float32), random_state=0)
    >>> sorted(np.unique(b).tolist()), round(float(b.mean()), 1)
    ([0.0, 1.0], 0.2)
    """
    X = np.asarray(X, dtype=np.float32)
    if X.size and (X.min() < 0 or X.max() > 1):
        raise InputError(f"binarize needs grey levels in [0, 1]; got [{X.min():g}, {X.max():g}]")
    rng = np.random.default_rng(random_state)
    return (rng.random(X.shape, dtype=np.float32) < X).astype(np.float32)


def cache_dir() -> Path:
    return Path(os.environ.get("AEKIT_CACHE", Path.home() / ".cache" / "aekit"))


def search_path(name: str) -> list[Path]:
    """Folders looked in for a registered dataset's files, in order."""
    roots = [Path(os.environ["AEKIT_DATA"]) / name] if os.environ.get("AEKIT_DATA") else []
    return roots + [Path("/usr/share/datasets") / name, cache_dir() / name]


def locate(name: str) -> Path | None:
    """The first folder holding every file of dataset ``name``, or None."""
    wanted = [f.name for pair in INFO[name].files.values() for f in pair]
    for folder in search_path(name):
        if all((folder / w).is_file() for w in wanted):
            return folder
    return None


def _load_idx_split(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = INFO[name].files[split]
    folder = locate(name)
    if folder is None:
        folder = cache_dir() / name
        for remote in (images, labels):
            if not (folder / remote.name).is_file():
                download(name, remote, folder)
    X = read_idx(folder / images.name)
    y = read_idx(folder / labels.name).astype(np.int64)
    if len(X) != len(y):
        raise InputError(f"{name} {split}: {len(X)} images but {len(y)} labels in {folder}")
    return (X.astype(np.float32) / 255.0), y


def _sha256_of(path: Path, decompress: bool = False) -> str:
    h = hashlib.sha256()
    with (gzip.open(path, "rb") if decompress else open(path, "rb")) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, remote: RemoteFile) -> bool:
    """True when ``path`` matches the recorded SHA-256 of the file or of its content."""
    if remote.sha256 and _sha256_of(path) == remote.sha256:
        return True
    if remote.content_sha256:
        try:
            return _sha256_of(path, decompress=remote.name.endswith(".gz")) == remote.content_sha256
        except (OSError, EOFError, gzip.BadGzipFile, zlib.error):
            return False
    return False


def download(name: str, remote: RemoteFile, folder: Path) -> Path:
    """Fetch ``remote`` from the dataset's sources into ``folder``, checking its SHA-256.

    Each source URL is tried in turn; a file that fails the check is deleted and never
    used. The file appears in ``folder`` only once complete and verified.
    """
    folder.mkdir(parents=True, exist_ok=True)
    errors = []
    for base in INFO[name].urls:
        url = base + remote.name
        try:
            def fetch(tmp: str, url: str = url) -> None:
                with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
                    shutil.copyfileobj(response, out)
                if not verify(Path(tmp), remote):
                    raise InputError(f"checksum mismatch for {url}")

            atomic_write(folder / remote.name, fetch)
            return folder / remote.name
        except (OSError, ValueError, http.client.HTTPException) as exc:
            errors.append(f"{url}: {exc}")
    where = ", ".join(str(p) for p in search_path(name)[:-1])
    raise FileNotFoundError(
        f"dataset {name!r} ({remote.name}) is not in {where} and could not be downloaded "
        f"({'; '.join(errors)}); put the files in $AEKIT_DATA/{name} or install Debian's "
        f"dataset-{name} package")


def read_idx(path: str | os.PathLike, memory_budget: int | str | None = None) -> np.ndarray:
    """Read an IDX file (gzip-compressed or raw) into an array of its stored type.

    The magic number and the shape are read first, and a file declaring more bytes than
    ``memory_budget`` (default: a quarter of this machine's memory) is refused before its
    data are read: a small ``.gz`` cannot expand into all the memory.
    """
    path = Path(path)
    budget = budget_bytes(memory_budget)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            magic = f.read(4)
            if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_DTYPES:
                raise InputError(f"{str(path)!r} is not an IDX file (bad magic number)")
            dtype, ndim = np.dtype(_IDX_DTYPES[magic[2]]), magic[3]
            dims = f.read(4 * ndim)
            if len(dims) < 4 * ndim:
                raise InputError(f"{str(path)!r} is truncated: its header is incomplete")
            shape = tuple(int(d) for d in np.frombuffer(dims, ">u4"))
            expected = math.prod(shape) * dtype.itemsize
            if expected > budget:
                raise InputError(f"{str(path)!r} declares an array of shape {shape} "
                                 f"({expected} bytes), more than the memory budget of {budget} "
                                 "bytes; pass a larger memory budget if the file is right")
            data = f.read(expected + 1)     # one byte more: trailing data are corruption
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise InputError(f"cannot read IDX file {str(path)!r}: {exc}") from None
    if len(data) != expected:
        found = f"{len(data)} bytes" if len(data) < expected else "more"
        raise InputError(f"{str(path)!r} is truncated or corrupt: header says {shape} "
                         f"({expected} bytes of data), found {found}")
    return np.frombuffer(data, dtype, count=math.prod(shape)).reshape(shape).astype(
        dtype.newbyteorder("="))


def read_file(path: str | os.PathLike, memory_budget: int | str | None = None
              ) -> tuple[np.ndarray, np.ndarray | None]:
    """Read X (and y where the file has labels) from .npy, .npz, .csv or IDX files.

    .npz: X from the array named ``X``/``x``/``data`` (else the first), y from ``y`` or
    ``labels``. .csv: numeric columns; a header column named label/y/target/class is y.
    Integer data is scaled by 1/255. The shapes of .npy, .npz and IDX arrays are read from
    their headers first: arrays over ``memory_budget`` bytes (default: a quarter of this
    machine's memory) are refused before anything is decompressed.
    """
    path = check_file(path)
    budget = budget_bytes(memory_budget)
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    readers = {".npy": _read_npy, ".npz": _read_npz, ".csv": _read_csv}
    if suffix in readers:
        X, y = readers[suffix](path, budget)
    elif "ubyte" in path.name or path.suffix in (".idx", ".gz"):
        X, y = read_idx(path, budget), None
    else:
        raise InputError(f"cannot read {str(path)!r}: unknown file type {suffix!r}; "
                         "aekit reads .npy, .npz, .csv and IDX (.gz) files")
    _check_rows(path, X.shape)
    return _as_float(X, path), y


def _check_rows(path: Path, shape: tuple[int, ...]) -> None:
    """Refuse an array with no rows, or rows with no values (numpy's own errors about
    them name neither the file nor the fix)."""
    if len(shape) >= 1 and shape[0] == 0:
        raise InputError(f"{str(path)!r} holds no rows (an array of shape {shape})")
    if len(shape) >= 2 and math.prod(shape[1:]) == 0:
        raise InputError(f"{str(path)!r} holds rows of shape {shape[1:]}, with no values; "
                         "save an array of shape (n, D) with D >= 1")


def _as_float(X: np.ndarray, path: Path) -> np.ndarray:
    X = np.asarray(X)
    if X.dtype.kind in "ui":
        return X.astype(np.float32) / 255.0
    if X.dtype.kind not in "fb":
        raise InputError(f"{str(path)!r} holds {X.dtype} data; aekit needs numbers")
    return X.astype(np.float32)


def _npy_header(f, what: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the header of the ``.npy`` data in the open file ``f``."""
    version = np.lib.format.read_magic(f)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    shape, _, dtype = read_header(f)
    if dtype.hasobject:
        raise ValueError(f"{what} holds Python objects, which only pickle could read "
                         "(allow_pickle=False)")
    return tuple(shape), dtype


def _within(path: Path, what: str, shape: tuple[int, ...], dtype: np.dtype,
            budget: int) -> None:
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > budget:
        raise InputError(f"{str(path)!r}: {what} of shape {shape} and dtype {dtype} takes "
                         f"{nbytes} bytes, more than the memory budget of {budget} bytes; "
                         "pass a larger memory budget, or a .npy file to stream")


def _read_npy(path: Path, budget: int) -> tuple[np.ndarray, None]:
    try:
        with open(path, "rb") as f:
            shape, dtype = _npy_header(f, "the array")
        _check_rows(path, shape)
        _within(path, "the array", shape, dtype, budget)
        return np.load(path, allow_pickle=False), None
    except InputError:
        raise
    except ValueError as exc:
        raise InputError(f"cannot read {str(path)!r} as .npy without pickle: {exc}") from None


def _read_npz(path: Path, budget: int) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.keys())
            if not keys:
                raise InputError(f"cannot read {str(path)!r} as .npz: the archive is empty")
            x_key = next((k for k in ("X", "x", "data") if k in keys), keys[0])
            y_key = next((k for k in ("y", "labels") if k in keys and k != x_key), None)
            # shapes from the members' headers: nothing is decompressed before the check
            for key in (x_key, y_key) if y_key else (x_key,):
                with z.zip.open(f"{key}.npy") as member:
                    shape, dtype = _npy_header(member, f"array {key!r}")
                if key == x_key:
                    _check_rows(path, shape)
                _within(path, f"array {key!r}", shape, dtype, budget)
            return z[x_key], (z[y_key].astype(np.int64) if y_key else None)
    except InputError:
        raise
    except (ValueError, OSError, KeyError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise InputError(f"cannot read {str(path)!r} as .npz: {exc}") from None


def _read_csv(path: Path, budget: int) -> tuple[np.ndarray, np.ndarray | None]:
    table = read_csv_table(path, budget=budget)
    return table.X, table.y


class Table(NamedTuple):
    """Rows read from a table file: features ``X`` (float32), labels ``y`` (or None) and
    the feature columns' names."""

    X: np.ndarray
    y: np.ndarray | None
    names: list[str]


def read_csv_table(path: str | os.PathLike, columns: Sequence[str] | None = None,
                   label_column: str | None = None, budget: int | None = None,
                   allow_text: bool = False) -> Table:
    """A numeric CSV file as features, labels and column names.

    A first row that is not all numbers is the header. ``label_column`` (a header name or
    a 0-based index) is read as labels, not trained on; without it a column named
    label/labels/y/target/class is. ``columns`` (names or indices) picks the feature
    columns (default: all but the label). A non-numeric value is refused naming its column,
    unless ``allow_text`` (a mixed table, ``likelihood="mixed"``): then ``X`` is an object
    array holding numbers, text, and None for empty cells.
    """
    path = check_file(path)
    budget = budget_bytes(budget) if budget is None or isinstance(budget, str) else budget
    size = path.stat().st_size
    if size > budget:       # as Python lists of text, rows take several times the file
        raise InputError(f"{str(path)!r} has {size} bytes, more than the memory budget of "
                         f"{budget} bytes; convert it to .npy, which aekit streams")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{str(path)!r} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at "
                         f"offset {exc.start}); save it as UTF-8 CSV") from None
    rows = [r for r in csv.reader(io.StringIO(text, newline="")) if r]
    if not rows:
        raise InputError(f"{str(path)!r} is empty")
    header = None
    try:
        [float(v) for v in rows[0]]
    except ValueError:
        header, rows = [h.strip() for h in rows[0]], rows[1:]
        if not rows:
            raise InputError(f"{str(path)!r} has a header but no data rows") from None
    lengths = sorted({len(r) for r in rows} | ({len(header)} if header else set()))
    if len(lengths) > 1:
        raise InputError(f"{str(path)!r} has rows of different lengths ({lengths}); every row "
                         "needs the same number of columns")
    return _table_from_rows(path, header, rows, columns, label_column, allow_text)


def read_parquet_table(path: str | os.PathLike, columns: Sequence[str] | None = None,
                       label_column: str | None = None, budget: int | None = None,
                       allow_text: bool = True) -> Table:
    """One ``.parquet`` file as features, labels and column names, read as
    :func:`read_csv_table` reads a CSV's cells (so both give the same table): numbers, text
    (with ``allow_text``, for ``likelihood="mixed"``), None for missing cells. Needs
    pyarrow (``pip install 'aekit[parquet]'``); numeric .parquet data that do not fit in
    memory stream through :mod:`aekit.data.sources` instead."""
    path = check_file(path)
    budget = budget_bytes(budget) if budget is None or isinstance(budget, str) else budget
    if path.stat().st_size * 8 > budget:       # decompressed, as Python objects
        raise InputError(f"{str(path)!r} is too large to read as a table of mixed types "
                         f"within the memory budget of {budget} bytes")
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(f"reading {str(path)!r} needs pyarrow: pip install "
                         "'aekit[parquet]'") from None
    table = pq.read_table(path)
    header = [str(n) for n in table.column_names]
    values = [table.column(j).to_pylist() for j in range(table.num_columns)]
    rows = [["" if v is None or (isinstance(v, float) and v != v) else str(v) for v in row]
            for row in zip(*values)]
    if not rows:
        raise InputError(f"{str(path)!r} has no rows")
    return _table_from_rows(path, header, rows, columns, label_column, allow_text)


def _table_from_rows(path: Path, header: list[str] | None, rows: list[list[str]],
                     columns: Sequence[str] | None, label_column: str | None,
                     allow_text: bool) -> Table:
    """Features, labels and names of a table given as text cells (empty = missing)."""
    names = header or [f"x{i}" for i in range(len(rows[0]))]
    label = None
    if label_column is not None:
        label = _column_index(path, names, label_column, "--label-column")
    elif header:
        lower = [h.lower() for h in header]
        label = next((lower.index(c) for c in LABEL_COLUMNS if c in lower), None)
    keep = ([_column_index(path, names, c, "--columns") for c in columns] if columns
            else [i for i in range(len(names)) if i != label])
    if label in keep:
        raise InputError(f"{str(path)!r}: column {names[label]!r} is the label column and "
                         "cannot also be a feature")
    data = np.empty((len(rows), len(keep)), dtype=object if allow_text else np.float64)
    for j, c in enumerate(keep):
        if allow_text:
            cells = [r[c].strip() for r in rows]
            numeric = all(_is_number(v) for v in cells)
            data[:, j] = [None if not v else _number(v) if numeric else v for v in cells]
            continue
        try:
            data[:, j] = [float(r[c]) if r[c].strip() else math.nan for r in rows]
        except ValueError:
            bad = next(r[c] for r in rows if not _is_number(r[c]))
            raise InputError(
                f"{str(path)!r}: column {names[c]!r} holds text ({bad[:40]!r}); aekit's models "
                f"take numeric features: encode it as numbers (e.g. one-hot), leave it out "
                f"with --columns, or name it with --label-column if it is the label"
            ) from None
    y = None
    if label is not None:
        texts = [r[label].strip() for r in rows]
        if not all(texts):
            raise InputError(f"{str(path)!r}: the label column {names[label]!r} has empty "
                             "values")
        if all(_is_number(t) for t in texts):
            values = np.array([float(t) for t in texts])
            y = values.astype(np.int64) if np.all(values == np.round(values)) else values
        else:
            y = np.array(texts, dtype=object)           # class names
    return Table(data if allow_text else data.astype(np.float32), y, [names[c] for c in keep])


def _number(text: str) -> int | float:
    """A CSV cell as an int when it is written as one, else a float."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return not text.strip()       # an empty cell is a missing value, not text
    return True


def _column_index(path: Path, names: list[str], column: str | int, option: str) -> int:
    """The index of ``column`` (a header name, any case, or a 0-based index)."""
    lower = [n.lower() for n in names]
    if isinstance(column, str) and column.lower() in lower:
        return lower.index(column.lower())
    if str(column).isdigit() and int(column) < len(names):
        return int(column)
    raise InputError(f"{str(path)!r} has no column {column!r} ({option}); its columns are "
                     f"{', '.join(names[:30])}{' ...' if len(names) > 30 else ''}")
