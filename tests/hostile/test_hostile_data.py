"""Hostile datasets given to `cahp-edge prune`: each fails before any work; one line, exit 1, no plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.hostile.support import fails_clean

GOOD_ROWS = "".join(f"the film was {w}\t{y}\n" for w, y in [("good", "pos"), ("bad", "neg")] * 4)


def _prune(ckpt: Path, data: Path, tmp_path: Path, *extra) -> list:
    return [
        "prune",
        "--model",
        ckpt,
        "--data",
        data,
        "--out",
        tmp_path / "plan",
        "--method",
        "random",
        "--heads",
        "6",
        *extra,
    ]


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return p


# (file name, content, extra CLI args, message substrings)
CASES = {
    "empty_file": ("train.tsv", "", (), "is empty"),
    "whitespace_only": ("train.tsv", "\n \n\t\n", (), "is empty"),
    "latin1_encoding": (
        "train.tsv",
        "sentence\tlabel\nthe caf\xe9 was good\tpos\n".encode("latin-1"),
        (),
        ["not UTF-8", "iconv"],
    ),
    "header_only": ("train.tsv", "sentence\tlabel\n", (), "header but no rows"),
    "no_label_column": ("train.tsv", "sentence\tscore\n" + GOOD_ROWS, (), ["no label column", "score"]),
    "no_text_column": ("train.csv", "body,label\nnice,pos\nbad,neg\n", (), ["no text column", "body"]),
    "unknown_text_column_option": (
        "train.tsv",
        "sentence\tlabel\n" + GOOD_ROWS,
        ("--text-column", "review"),
        ["'review' not found", "columns found"],
    ),
    "nan_label_csv": (
        "train.csv",
        "sentence,label\ngood film,pos\nbad film,NaN\n",
        (),
        ["missing label", "row"],
    ),
    "empty_label_jsonl": (
        "train.jsonl",
        '{"text": "good", "label": "pos"}\n{"text": "bad", "label": null}\n',
        (),
        "missing label",
    ),
    "label_not_in_model": (
        "train.tsv",
        "sentence\tlabel\n" + GOOD_ROWS + "so so\tmeh\n",
        (),
        ["['meh']", "not in the model's label set"],
    ),
    "integer_labels_out_of_range": (
        "train.tsv",
        "sentence\tlabel\ngood\t0\nbad\t1\nodd\t7\n",
        (),
        "not in the model's label set",
    ),
    "mixed_single_pair": (
        "train.tsv",
        "sentence1\tsentence2\tlabel\na cat\tan animal\tpos\na dog\t\tneg\n",
        (),
        ["mixed single/pair rows", "sentence2"],
    ),
    "ragged_row": (
        "train.tsv",
        "sentence\tlabel\ngood\tpos\nbad\tneg\textra\n",
        (),
        "has 3 fields, expected 2",
    ),
    "unterminated_quote_csv": ("train.csv", 'sentence,label\n"good film,pos\n', (), "not valid csv"),
    "duplicate_columns": ("train.csv", "label,label\npos,pos\n", (), "duplicate column names"),
    "jsonl_broken_line": (
        "train.jsonl",
        '{"text": "good", "label": "pos"}\n{"text": "bad", "label": \n',
        (),
        ":2 is not valid JSON",
    ),
    "jsonl_not_objects": ("train.jsonl", '["good", "pos"]\n', (), "is not a JSON object"),
    "jsonl_label_is_list": ("train.jsonl", '{"text": "good", "label": ["pos", "neg"]}\n', (), "label at"),
    "empty_text": ("train.csv", "sentence,label\ngood,pos\n   ,neg\n", (), "empty text at"),
    "sst_bad_line": ("train.txt", "__label__pos\tgood\nno label here\n", (), "is not a `__label__"),
    "sst_with_column_option": (
        "train.txt",
        "__label__pos\tgood\n",
        ("--text-column", "x"),
        "no named columns",
    ),
    "parquet_garbage": (
        "train.parquet",
        b"PAR1 this is not parquet at all",
        (),
        "not a readable parquet file",
    ),
    "unsupported_extension": ("train.xlsx", b"PK\x03\x04", (), "unsupported dataset file type"),
    "calib_larger_than_data": (
        "train.tsv",
        "sentence\tlabel\n" + GOOD_ROWS,
        ("--calib-size", "100"),
        "calibration size 100 is larger than the 8 training rows",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_dataset(case, ckpt, tmp_path, capsys):
    name, content, extra, msg = CASES[case]
    data = _write(tmp_path, name, content)
    fails_clean(_prune(ckpt, data, tmp_path, *extra), capsys, msg, tmp_path)


def test_dataset_missing(ckpt, tmp_path, capsys):
    fails_clean(_prune(ckpt, tmp_path / "train.tsv", tmp_path), capsys, "dataset not found", tmp_path)


def test_dataset_folder_without_train_file(ckpt, tmp_path, capsys):
    d = tmp_path / "data"
    d.mkdir()
    (d / "notes.md").write_text("hello")
    (d / "dev.tsv").write_text("sentence\tlabel\ngood\tpos\n")
    fails_clean(_prune(ckpt, d, tmp_path), capsys, ["no train file", "dev.tsv"], tmp_path)


def test_parquet_nan_label(ckpt, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "train.parquet"
    pq.write_table(pa.table({"sentence": ["good", "bad"], "label": [1.0, float("nan")]}), p)
    fails_clean(_prune(ckpt, p, tmp_path), capsys, ["missing label", "NaN"], tmp_path)


def test_pair_data_for_single_text_model(ckpt, tmp_path, capsys):
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["cahp_input"] = "single"  # what `cahp-edge finetune` records
    (ckpt / "config.json").write_text(json.dumps(cfg))
    data = _write(tmp_path, "train.tsv", "sentence1\tsentence2\tlabel\na\tb\tpos\nc\td\tneg\n")
    fails_clean(_prune(ckpt, data, tmp_path), capsys, ["holds sentence pairs", "single inputs"], tmp_path)


@pytest.mark.parametrize(
    ("opt", "msg"),
    [
        (("--degree", "0"), "degree"),
        (("--degree", "11"), "degree"),
        (("--heads", "99"), "99"),
        (("--keep-ratio", "1.5"), "keep"),
    ],
    ids=["degree 0", "degree 11", "more heads than the model", "keep ratio 1.5"],
)
def test_impossible_prune_options(opt, msg, ckpt, tiny_data, tmp_path, capsys):
    # a contradiction may be reported as usage (2) or runtime (1); anything else is not fine
    args = ["prune", "--model", ckpt, "--data", tiny_data / "train.tsv", "--out", tmp_path / "plan", *opt]
    fails_clean(args, capsys, msg, tmp_path, code=(1, 2))
