"""Property tests for the txt and csv loaders: arbitrary content raises only DataError, and rows that
load are exactly the rows written (none dropped, none misassigned)."""

from __future__ import annotations

import contextlib
import csv
import io
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cahp_edge.data import MISSING, load_dataset
from cahp_edge.errors import DataError

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

labels = st.text(st.characters(categories=("L", "N", "P", "S")), min_size=1, max_size=6).filter(
    lambda s: s.strip() == s and s.lower() not in MISSING
)
any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


def _load(name: str, data: bytes, **kw):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / name
        p.write_bytes(data)
        return load_dataset(p, **kw)


def _check_consistent(ds) -> None:
    assert len(ds.texts) == len(ds.labels) > 0
    assert all(0 <= y < len(ds.label_names) for y in ds.labels)
    assert all(t.strip() for t in ds.texts)


sst_text = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\n\r"), min_size=1, max_size=40
).filter(lambda s: s.strip())


@SETTINGS
@given(st.lists(st.tuples(labels, sst_text), min_size=1, max_size=12), st.sampled_from(["\t", " "]))
def test_sst_roundtrip(rows, sep):
    body = "".join(f"__label__{y}{sep}{t}\n" for y, t in rows)
    ds = _load("train.txt", body.encode("utf-8"))
    assert ds.texts == [t for _, t in rows]
    assert [ds.label_names[i] for i in ds.labels] == [y for y, _ in rows]


@SETTINGS
@given(
    st.lists(st.one_of(any_text, st.builds(lambda y, t: f"__label__{y}\t{t}", labels, any_text)), max_size=8)
)
def test_sst_arbitrary_lines(lines):
    content = "\n".join(lines)
    try:
        ds = _load("x.txt", content.encode("utf-8"))
    except DataError:
        return
    _check_consistent(ds)
    assert len(ds) == sum(1 for ln in content.split("\n") if ln.strip())  # every non-blank line is one row


@SETTINGS
@given(st.binary(max_size=200))
def test_sst_arbitrary_bytes(data):
    with contextlib.suppress(DataError):
        _check_consistent(_load("b.txt", data))


csv_text = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=40
).filter(lambda s: s.strip())


@SETTINGS
@given(st.lists(st.tuples(csv_text, labels), min_size=1, max_size=12))
def test_csv_roundtrip(rows):
    buf = io.StringIO(newline="")
    w = csv.writer(buf)  # default \r\n terminator: fields holding a bare \r get quoted too
    w.writerow(["text", "label"])
    w.writerows(rows)
    ds = _load("d.csv", buf.getvalue().encode("utf-8"))
    assert ds.texts == [t for t, _ in rows]
    assert [ds.label_names[i] for i in ds.labels] == [y for _, y in rows]


@SETTINGS
@given(any_text, st.sampled_from(["d.csv", "d.tsv"]))
def test_delimited_arbitrary_content(body, name):
    sep = "," if name.endswith("csv") else "\t"
    try:
        ds = _load(name, f"text{sep}label\n{body}".encode())
    except DataError:
        return
    _check_consistent(ds)


@SETTINGS
@given(st.binary(max_size=200), st.sampled_from(["d.csv", "d.tsv", "d.jsonl", "d.txt"]))
def test_arbitrary_bytes_any_format(data, name):
    with contextlib.suppress(DataError):
        _check_consistent(_load(name, data))
