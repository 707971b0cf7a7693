"""Data files of measurements (funcapprox.samples): each format loads, each bad file is one line naming the file
(and for text the line and column), the 64 MiB cap holds before reading, and the split is seeded and complete."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest
from helpers.properties import PROPERTY
from hypothesis import given
from hypothesis import strategies as st

from funcapprox.errors import ConfigError
from funcapprox.samples import MAX_BYTES, Samples, load_samples, split

XS = np.linspace(0.0, 2.0, 12)
YS = np.sin(6 * XS)


def rows(n: int = 12) -> str:
    return "".join(f"{float(x)!r},{float(y)!r}\n" for x, y in zip(XS[:n], YS[:n], strict=True))


def write(tmp_path, name: str, content: str | bytes):
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def check(samples: Samples, n: int = 12):
    assert samples.x.dtype == samples.y.dtype == np.float64
    assert samples.x.shape == samples.y.shape == (n,)
    np.testing.assert_array_equal(samples.x, XS[:n])
    np.testing.assert_array_equal(samples.y, YS[:n])
    assert samples.domain == (0.0, float(XS[n - 1]))


@pytest.mark.parametrize("text", [
    "x,y\n" + rows(),
    " X , Y \r\n" + rows().replace("\n", "\r\n"),
    rows(),
    "# measured on a bench\n\n" + rows(5) + "   \n# a comment in the middle\n" + rows()[len(rows(5)):] + "\n\n",
    "\ufeff# with a byte order mark\nx,y\n" + rows(),
])
def test_text_files_load(tmp_path, text):
    path = write(tmp_path, "data.csv", text)
    samples = load_samples(str(path))
    check(samples)
    assert samples.source == str(path)
    assert samples.digest == hashlib.sha256(path.read_bytes()).hexdigest()


def test_txt_npy_and_npz_load_and_a_copy_has_the_same_digest(tmp_path):
    check(load_samples(write(tmp_path, "data.TXT", rows())))
    np.save(tmp_path / "data.npy", np.column_stack([XS, YS]))
    check(load_samples(tmp_path / "data.npy"))
    np.savez_compressed(tmp_path / "data.npz", x=XS, y=YS, note=np.arange(3))
    npz = load_samples(tmp_path / "data.npz")
    check(npz)
    copy = write(tmp_path, "copy.npz", (tmp_path / "data.npz").read_bytes())
    assert load_samples(copy).digest == npz.digest
    np.save(tmp_path / "ints.npy", np.column_stack([np.arange(10), np.arange(10) ** 2]))
    assert load_samples(tmp_path / "ints.npy").y.dtype == np.float64


def test_samples_are_read_only_and_duplicates_are_allowed(tmp_path):
    samples = load_samples(write(tmp_path, "d.csv", rows() + rows()))
    assert len(samples) == 24
    with pytest.raises(ValueError):
        samples.x[0] = 5.0


@pytest.mark.parametrize("name, content, expected", [
    ("d.csv", "x,y\n" + rows(5) + "0.5,abc\n" + rows(), "line 7, column 2: 'abc' is not a number"),
    ("d.csv", rows(3) + "nan,1\n" + rows(), "line 4, column 1: 'nan' is not finite"),
    ("d.csv", rows(3) + "1,-Inf\n" + rows(), "line 4, column 2: '-Inf' is not finite"),
    ("d.csv", rows(3) + "1,1e999\n" + rows(), "line 4, column 2: '1e999' is not finite"),
    ("d.csv", rows(2) + "1_0,1\n" + rows(), "line 3, column 1: '1_0' is not a number"),
    ("d.csv", rows(2) + "\u0661,1\n" + rows(), "line 3, column 1: '\u0661' is not a number"),
    ("d.csv", rows(2) + "1,\n" + rows(), "line 3, column 2: '' is not a number"),
    ("d.csv", rows(2) + "x,y\n" + rows(), "line 3, column 1: 'x' is not a number"),
    ("d.csv", rows(2) + "1 2\n" + rows(), "line 3 has one column"),
    ("d.csv", rows(2) + "1,2,3\n" + rows(), "line 3 has 3 columns"),
    ("d.txt", "x\n1\n2\n3\n", "line 1 has one column"),
    ("d.csv", "x,y\n" + rows(9), "9 points; at least 10 are needed"),
    ("d.csv", "", "0 points; at least 10 are needed"),
    ("d.csv", "1,1\n" * 12, "every x is 1; the domain needs at least two different x"),
    ("d.csv", b"1,2\n\xff\xfe\n", "not UTF-8 text"),
    ("d.dat", rows(), "unknown suffix '.dat'"),
    ("d", rows(), "unknown suffix '(none)'"),
    ("d.npy", b"not numpy at all", "not a .npy array numpy can read"),
    ("d.npz", b"PK not a zip", "not a .npz archive numpy can read"),
])
def test_bad_text_and_suffixes_are_one_line(tmp_path, name, content, expected):
    path = write(tmp_path, name, content)
    with pytest.raises(ConfigError) as caught:
        load_samples(path)
    message = str(caught.value)
    assert message.startswith(f"data file {path}: ")
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize("arrays, expected", [
    ({"a": np.zeros((12, 3))}, "shape (12, 3); give n×2"),
    ({"a": np.zeros(12)}, "shape (12,); give n×2"),
    ({"a": np.array([["1", "2"]] * 12)}, "holds <U1, not numbers"),
    ({"a": np.column_stack([XS, np.where(XS > 1, np.inf, YS)])}, "the array row 7 is not finite"),
    ({"x": XS}, "no array 'y'"),
    ({"y": YS}, "no array 'x'"),
    ({"x": XS, "y": YS[:11]}, "x has 12 values and y 11"),
    ({"x": XS.reshape(3, 4), "y": YS}, "array 'x' has shape (3, 4); give a 1-D array"),
    ({"x": XS, "y": np.where(XS > 1, np.nan, YS)}, "array 'y' row 7 is not finite"),
    ({"x": XS.astype(bool), "y": YS}, "array 'x' holds bool, not numbers"),
    ({"x": np.array([object()] * 12), "y": YS}, "array 'x' cannot be read"),
])
def test_bad_arrays_are_one_line(tmp_path, arrays, expected):
    if "a" in arrays:
        path = tmp_path / "d.npy"
        np.save(path, arrays["a"])
    else:
        path = tmp_path / "d.npz"
        np.savez(path, **arrays)
    with pytest.raises(ConfigError) as caught:
        load_samples(path)
    assert str(caught.value).startswith(f"data file {path}: ")
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_npz_given_as_npy_and_the_reverse_are_refused(tmp_path):
    np.savez(tmp_path / "d.npz", x=XS, y=YS)
    write(tmp_path, "d.npy", (tmp_path / "d.npz").read_bytes())
    with pytest.raises(ConfigError, match="not a single .npy array"):
        load_samples(tmp_path / "d.npy")
    np.save(tmp_path / "e.npy", np.column_stack([XS, YS]))
    write(tmp_path, "e.npz", (tmp_path / "e.npy").read_bytes())
    with pytest.raises(ConfigError, match="not a .npz archive"):
        load_samples(tmp_path / "e.npz")


def test_missing_file_and_folder_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"^data file .*missing\.csv: cannot read it: No such file"):
        load_samples(tmp_path / "missing.csv")
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(ConfigError, match=r"^data file .*folder\.csv: not a regular file$"):
        load_samples(tmp_path / "folder.csv")


def test_a_file_over_64_mib_is_refused_before_reading(tmp_path):
    path = tmp_path / "big.csv"
    with open(path, "wb") as handle:
        handle.truncate(65 * 2**20)
    start = time.monotonic()
    with pytest.raises(ConfigError, match=rf"^data file .*big\.csv: {65 * 2**20} bytes; at most {MAX_BYTES}"):
        load_samples(path)
    assert time.monotonic() - start < 1.0


def samples_of(n: int) -> Samples:
    return Samples(x=np.arange(n, dtype=np.float64), y=np.zeros(n), source="-", digest="-")


@pytest.mark.parametrize("n, holdout, held", [
    (10, 0.2, 2), (100, 0.2, 20), (10, 0.05, 1), (10, 0.01, 1), (10, 0.9, 8), (3, 0.9, 1), (11, 0.5, 6),
    (10, 0.0, 0), (10, 0, 0),
])
def test_split_sizes_disjoint_and_complete(n, holdout, held):
    train, test = split(samples_of(n), holdout)
    assert len(test) == held and len(train) == n - held
    assert not set(train) & set(test)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(n))
    assert train.dtype == test.dtype == np.int64


def test_split_is_deterministic_and_changes_with_the_seed():
    samples = samples_of(50)
    first = split(samples, 0.2, seed=3)
    other = Samples(x=np.linspace(-5, 5, 50), y=np.ones(50), source="elsewhere", digest="x")
    for again in (split(samples, 0.2, seed=3), split(other, 0.2, seed=3)):
        np.testing.assert_array_equal(again[0], first[0])
        np.testing.assert_array_equal(again[1], first[1])
    assert not np.array_equal(split(samples, 0.2, seed=4)[1], first[1])
    np.testing.assert_array_equal(split(samples)[1], split(samples, 0.2, 12)[1])


@pytest.mark.parametrize("holdout", [-0.1, 0.95, 1, float("nan"), float("inf"), True, "0.2", None])
def test_split_refuses_a_bad_holdout(holdout):
    with pytest.raises(ConfigError, match=r"^--holdout takes a fraction from 0 to 0.9"):
        split(samples_of(10), holdout)


@pytest.mark.parametrize("seed", [-1, 1.5, True, "12"])
def test_split_refuses_a_bad_seed(seed):
    with pytest.raises(ConfigError, match="seed"):
        split(samples_of(10), 0.2, seed)


@PROPERTY
@given(st.one_of(
    st.binary(max_size=400),
    st.lists(st.text(alphabet="0123456789.,-+eE \t#xXyYnaifNAIF_\r\n\u0661\x00", max_size=20), max_size=30)
    .map(lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass")),
    st.lists(st.tuples(st.floats(width=32), st.floats(width=32)), max_size=30)
    .map(lambda points: "".join(f"{x!r},{y!r}\n" for x, y in points).encode()),
))
def test_any_bytes_in_a_csv_give_samples_or_one_config_error(tmp_path, data):
    path = tmp_path / "random.csv"
    path.write_bytes(data)
    try:
        samples = load_samples(path)
    except ConfigError as exc:
        assert str(exc).startswith(f"data file {path}: ") and "\n" not in str(exc)
        return
    assert len(samples.x) == len(samples.y) >= 10
    assert np.isfinite(samples.x).all() and np.isfinite(samples.y).all()
    assert samples.domain[0] < samples.domain[1]
