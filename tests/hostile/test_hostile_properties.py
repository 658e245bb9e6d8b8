"""Property tests: arbitrary input to the data loaders, plan parsing and target parsing.

Contract: the result is either a CahpError subclass of the right kind (never another exception, so the
CLI never prints a traceback) or a value that is *right*: a dataset whose labels index its label
names and whose rows are the rows written; a plan with only valid, unique head indices that
round-trips; a target profile whose values are the ones written. Bounded: 50 examples each.
"""

from __future__ import annotations

import json
import math
import string
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cahp_edge.errors import DataError, PlanError, TargetError

SETTINGS = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("props")


# ---- data loaders ---------------------------------------------------------------------------------------
def _check_dataset(ds) -> None:
    n = len(ds.texts)
    assert n > 0 and len(ds.labels) == n
    assert ds.pairs is None or len(ds.pairs) == n
    assert len(set(ds.label_names)) == len(ds.label_names)
    assert all(0 <= y < len(ds.label_names) for y in ds.labels)
    assert all(isinstance(t, str) and t.strip() for t in ds.texts)


@SETTINGS
@given(
    raw=st.binary(max_size=400), ext=st.sampled_from([".txt", ".tsv", ".csv", ".jsonl", ".json", ".parquet"])
)
def test_loader_on_arbitrary_bytes(work, raw, ext):
    from cahp_edge.data import load_dataset

    p = work / f"any{ext}"
    p.write_bytes(raw)
    try:
        ds = load_dataset(p)
    except DataError:
        return
    _check_dataset(ds)


_line = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60)


@SETTINGS
@given(
    lines=st.lists(_line, min_size=0, max_size=12),
    ext=st.sampled_from([".txt", ".tsv", ".csv", ".jsonl"]),
    header=st.sampled_from(
        ["", "sentence\tlabel", "sentence,label", "text,label,extra", "sentence1\tsentence2\tlabel"]
    ),
)
def test_loader_on_arbitrary_text_lines(work, lines, ext, header):
    from cahp_edge.data import load_dataset

    p = work / f"lines{ext}"
    p.write_text("\n".join([header, *lines]) if header else "\n".join(lines), encoding="utf-8")
    try:
        ds = load_dataset(p)
    except DataError:
        return
    _check_dataset(ds)


_word = st.text(alphabet=string.ascii_letters + string.digits + " .,!?'éü-", min_size=1, max_size=30).filter(
    lambda s: s.strip() and s == s.strip()
)
_label = st.sampled_from(["neg", "pos", "neutral", "0", "1", "2", "very good"])


@SETTINGS
@given(
    rows=st.lists(st.tuples(_word, _label), min_size=1, max_size=15),
    fmt=st.sampled_from(["tsv", "csv", "jsonl", "txt"]),
)
def test_loader_round_trips_valid_rows(work, rows, fmt):
    """Whatever the format, a valid file loads to exactly its rows and labels (nothing dropped or renamed)."""
    from cahp_edge.data import load_dataset

    p = work / f"valid.{fmt}"
    if fmt == "tsv":
        p.write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows), encoding="utf-8")
    elif fmt == "csv":
        p.write_text("sentence,label\n" + "".join(f'"{t}","{y}"\n' for t, y in rows), encoding="utf-8")
    elif fmt == "jsonl":
        p.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows), encoding="utf-8")
    else:
        assume(all(" " not in y for _, y in rows))  # a txt label ends at the first space
        p.write_text("".join(f"__label__{y}\t{t}\n" for t, y in rows), encoding="utf-8")
    ds = load_dataset(p)
    _check_dataset(ds)
    assert ds.texts == [t for t, _ in rows]
    assert [ds.label_names[i] for i in ds.labels] == [y for _, y in rows]


# ---- plans ----------------------------------------------------------------------------------------------
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 20) | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=25,
)
_plan_like = st.fixed_dictionaries(
    {
        "num_heads": st.lists(st.integers(-1, 6) | st.booleans() | st.floats(0, 6), max_size=4),
        "kept": st.lists(
            st.lists(st.integers(-2, 7) | st.booleans() | st.floats(-1, 7), max_size=5), max_size=4
        ),
    },
    optional={"format": _json, "method": _json},
)


def _check_plan(plan) -> None:
    from cahp_edge.plan import HeadPlan

    assert len(plan.kept) == len(plan.num_heads)
    for n, heads in zip(plan.num_heads, plan.kept, strict=True):
        assert type(n) is int and n > 0
        assert all(type(h) is int and 0 <= h < n for h in heads)
        assert len(set(heads)) == len(heads) and list(heads) == sorted(heads)
    again = HeadPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan and again.mask() == plan.mask()


@SETTINGS
@given(doc=_json | _plan_like)
def test_plan_from_arbitrary_json(doc):
    from cahp_edge.plan import HeadPlan

    try:
        plan = HeadPlan.from_dict(doc)
    except PlanError:
        return
    _check_plan(plan)


@SETTINGS
@given(raw=st.binary(max_size=200) | _plan_like.map(lambda d: json.dumps(d).encode()))
def test_plan_load_arbitrary_file(work, raw):
    from cahp_edge.plan import HeadPlan

    p = work / "plan.json"
    p.write_bytes(raw)
    try:
        plan = HeadPlan.load(p)
    except PlanError:
        return
    _check_plan(plan)


# ---- target profiles ------------------------------------------------------------------------------------
from tests.hostile.test_hostile_plan_target import GOOD  # noqa: E402 - the valid profile the mutations start from

_KEYS = [
    ("threads",),
    ("opset",),
    ("optimize",),
    ("arch",),
    ("cpu",),
    ("isa_features",),
    ("execution_providers",),
    ("formats",),
    ("quantization", "mode"),
    ("quantization", "per_channel"),
    ("quantization", "activation_type"),
    ("quantization", "calibration_size"),
    ("benchmark", "batch"),
    ("benchmark", "runs"),
    ("budgets", "max_accuracy_drop"),
    ("budgets", "p90_latency_ms"),
    ("budgets", "max_size_mb"),
    ("extra_key",),
    ("budgets", "extra_key"),
]
_value = st.one_of(
    st.integers(-3, 300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(alphabet=string.ascii_letters + string.digits + "_-.", max_size=12),
    st.lists(st.sampled_from(["onnx", "ort", "CPUExecutionProvider", "avx2", "x"]), max_size=3),
    st.sampled_from(["x86_64", "aarch64", "dynamic", "static", "uint8", "int8", "none", "fp16"]),
)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, str):
        return json.dumps(v)
    return str(v)


def _with(doc: str, key: tuple[str, ...], value) -> str:
    """GOOD with one key set to value (tables end at the next header; top-level keys come first)."""
    line = f"{key[-1]} = {_toml_value(value)}"
    lines = doc.strip().split("\n")
    table = f"[{key[0]}]" if len(key) == 2 else None
    start = lines.index(table) + 1 if table else 0
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("[")), len(lines))
    for i in range(start, end):
        if lines[i].split("=")[0].strip() == key[-1]:
            lines[i] = line
            break
    else:
        lines.insert(end, line)
    return "\n".join(lines) + "\n"


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, float) and type(b) is int:  # an integer written for a float field: exact widening
        return a == b
    return a == b and type(a) is type(b)


@SETTINGS
@given(key=st.sampled_from(_KEYS), value=_value)
def test_target_mutation_rejected_or_kept_exactly(work, key, value):
    from cahp_edge.targets.profile import load_target

    p = work / "mutant.toml"
    p.write_text(_with(GOOD, key, value))
    try:
        t = load_target(p)
    except TargetError as e:
        assert key[-1] in str(e) or "recipes" in str(e) or "TOML" in str(e), str(e)
        return
    got = t.summary()
    for k in key:
        got = got[k]
    assert _same(got, value), f"{key} = {value!r} loaded as {got!r}"
    raw = tomllib.loads(p.read_text())
    assert t.name == raw["name"] and t.budgets.p90_latency_ms == raw["budgets"]["p90_latency_ms"]


@SETTINGS
@given(text=st.text(max_size=300))
def test_target_from_arbitrary_text(work, text):
    from cahp_edge.targets.profile import load_target

    p = work / "any.toml"
    p.write_bytes(text.encode("utf-8", errors="replace"))
    try:
        load_target(p)
    except TargetError:
        return
    raise AssertionError("random text made a valid target profile")
