"""cahp_edge.data: every format, label alignment, splits, batching, evaluation, bad input."""

from __future__ import annotations

import json

import pytest
import torch

from cahp_edge.data import (
    TextDataset,
    align_labels,
    check_task,
    encode,
    load_dataset,
    make_splits,
)
from cahp_edge.errors import DataError
from cahp_edge.model.evaluate import evaluate_accuracy, predict_logits

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write(p, text, enc="utf-8"):
    p.write_bytes(text.encode(enc))
    return p


def err(fn, *a, **k) -> str:
    with pytest.raises(DataError) as e:
        fn(*a, **k)
    msg = str(e.value)
    assert "\n" not in msg and "Fix:" in msg
    return msg


# ---- formats -------------------------------------------------------------------------------------


def test_sst_txt_labels_sorted_numerically(tmp_path):
    p = write(tmp_path / "train.txt", "__label__10\tten\n\n__label__2\ttwo  words\r\n__label__1 one\n")
    ds = load_dataset(p)
    assert ds.texts == ["ten", "two  words", "one"]  # blank line skipped, text kept verbatim, \r stripped
    assert ds.label_names == ["1", "2", "10"] and ds.labels == [2, 1, 0]
    assert ds.split == "train" and not ds.is_pair and ds.label_counts() == {"1": 1, "2": 1, "10": 1}


def test_sst_txt_bad_lines(tmp_path):
    assert "x.txt:2 is not a `__label__" in err(
        load_dataset, write(tmp_path / "x.txt", "__label__1\ta\nhello\n")
    )
    assert "empty text at" in err(load_dataset, write(tmp_path / "y.txt", "__label__1\t   \n"))


def test_glue_tsv_single_keeps_quotes(tmp_path):
    p = write(tmp_path / "dev.tsv", 'sentence\tlabel\nit \'s "great" , really\t1\nbad\t0\n')
    ds = load_dataset(p)
    assert (
        ds.texts == ['it \'s "great" , really', "bad"]
        and ds.labels == [1, 0]
        and ds.label_names == ["0", "1"]
    )


def test_glue_tsv_pair_and_qnli_columns(tmp_path):
    ds = load_dataset(
        write(tmp_path / "a.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA\tB\tx\n1\tC\tD\ty\n")
    )
    assert ds.is_pair and ds.texts == ["A", "C"] and ds.pairs == ["B", "D"]
    ds = load_dataset(write(tmp_path / "q.tsv", "question\tsentence\tlabel\nQ?\tS.\tentailment\n"))
    assert ds.texts == ["Q?"] and ds.pairs == ["S."]


def test_csv_columns_and_quoting(tmp_path):
    p = write(tmp_path / "d.csv", 'id,review,stars\n1,"good, very ""good""\nsecond line",5\n2,meh,1\n')
    msg = err(load_dataset, p)
    assert "no label column" in msg and "['id', 'review', 'stars']" in msg
    ds = load_dataset(p, text_column="review", label_column="stars")
    assert ds.texts == ['good, very "good"\nsecond line', "meh"] and ds.label_names == ["1", "5"]
    assert "label column 'lbl' not found" in err(load_dataset, p, text_column="review", label_column="lbl")


def test_jsonl_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"text": "a", "label": 1.0}, {"text": "b", "label": 0.0}]
    ds = load_dataset(write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n"))
    assert ds.label_names == ["0", "1"] and ds.labels == [1, 0]
    pq.write_table(pa.table({"premise": ["p1", "p2"], "hypothesis": ["h1", "h2"], "label": [0, 2]}),
                   tmp_path / "d.parquet")
    ds = load_dataset(tmp_path / "d.parquet")
    assert ds.is_pair and ds.pairs == ["h1", "h2"] and ds.label_names == ["0", "2"]
    pq.write_table(pa.table({"text": ["x", "y"], "label": [1.0, float("nan")]}), tmp_path / "n.parquet")
    assert "missing label" in err(load_dataset, tmp_path / "n.parquet")


def test_folder_split_selection(tmp_path):
    write(tmp_path / "train.tsv", "sentence\tlabel\na\t0\nb\t1\n")
    write(tmp_path / "validation.tsv", "sentence\tlabel\nc\t1\n")
    assert load_dataset(tmp_path).texts == ["a", "b"]
    assert load_dataset(tmp_path, "dev").texts == ["c"]  # dev falls back to validation
    msg = err(load_dataset, tmp_path, "test")
    assert "no test file" in msg and "train.tsv" in msg


def test_label_names_rename_integer_ids(tmp_path):
    p = write(tmp_path / "d.tsv", "sentence\tlabel\na\t0\nb\t1\n")
    ds = load_dataset(p, label_names=["negative", "positive"])
    assert ds.label_names == ["negative", "positive"] and ds.labels == [0, 1]
    assert "not in the given label names" in err(load_dataset, p, label_names=["x"])


@pytest.mark.parametrize(
    "name,content,needle",
    [
        ("e.tsv", "", "is empty"),
        ("h.tsv", "sentence\tlabel\n", "header but no rows"),
        ("f.tsv", "sentence\tlabel\na\t1\tEXTRA\n", "has 3 fields, expected 2"),
        ("n.tsv", "sentence\tlabel\na\tNaN\n", "missing label"),
        ("m.tsv", "sentence\tlabel\na\t\n", "missing label"),
        ("t.tsv", "sentence\tlabel\n \t1\n", "empty text"),
        ("p.tsv", "sentence1\tsentence2\tlabel\na\tb\t1\nc\t\t0\n", "mixed single/pair rows"),
        ("j.jsonl", '{"text": "a", "label": 1}\nnot json\n', "j.jsonl:2 is not valid JSON"),
        ("x.xml", "<a/>", "unsupported dataset file type .xml"),
        ("d.tsv", "sentence\tsentence\tlabel\na\tb\t1\n", "duplicate column names"),
    ],
)
def test_bad_files(tmp_path, name, content, needle):
    assert needle in err(load_dataset, write(tmp_path / name, content))


def test_missing_and_non_utf8(tmp_path):
    assert "dataset not found" in err(load_dataset, tmp_path / "nope.tsv")
    msg = err(load_dataset, write(tmp_path / "l.tsv", "sentence\tlabel\ncaf\u00e9\t1\n", enc="latin-1"))
    assert "not UTF-8" in msg and "offset" in msg


def test_hub_name_without_datasets_is_a_data_error(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_datasets(name, *a, **k):
        if name == "datasets":
            raise ImportError("no datasets")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    assert "pip install datasets" in err(load_dataset, "glue/sst2")


# ---- labels ----------------------------------------------------------------------------------------


def ds_of(labels, names, pairs=False):
    n = len(labels)
    return TextDataset(
        [f"t{i}" for i in range(n)],
        [f"p{i}" for i in range(n)] if pairs else None,
        labels,
        names,
        "mem",
        "train",
    )


def test_align_by_name_and_numeric_strings():
    ds = ds_of([0, 1, 1], ["neg", "pos"])
    al = align_labels(ds, {"0": "pos", "1": "neg"})
    assert al.labels == [1, 0, 0] and al.label_names == ["pos", "neg"]
    al = align_labels(ds_of([0, 1], ["1", "2"]), {0: "2.0", 1: "1"})  # "2" == "2.0" numerically
    assert al.labels == [1, 0]


def test_align_generic_labels():
    gen = {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    assert align_labels(ds_of([0, 1], ["0", "2"]), gen).labels == [0, 2]  # integer labels are ids
    assert align_labels(ds_of([0, 1, 2], ["a", "b", "c"]), gen).labels == [0, 1, 2]  # sorted -> 0..n-1
    assert "cannot map 2 dataset labels" in err(align_labels, ds_of([0, 1], ["a", "b"]), gen)


def test_align_integer_ids_onto_named_labels():
    """eval.jsonl may hold label ids (the device runner reads them): ids 0..n-1 that match no label name
    are ids; a name match still wins (SST-5's "1".."5" stars), and an out-of-range id is refused."""
    named = {0: "negative", 1: "positive"}
    assert align_labels(ds_of([0, 1, 1], ["0", "1"]), named).labels == [0, 1, 1]
    assert align_labels(ds_of([0, 1], ["1", "0"]), named).labels == [1, 0]
    stars = {i: str(i + 1) for i in range(5)}  # labels named "1".."5": "1" is the name of id 0
    assert align_labels(ds_of([0, 1], ["1", "2"]), stars).labels == [0, 1]
    assert "labels ['0', '2']" in err(align_labels, ds_of([0, 1], ["0", "2"]), named)  # 2 is no id
    assert "['1']" in err(align_labels, ds_of([0, 1], ["negative", "1"]), named)  # mixed: not ids


def test_align_mismatch_lists_both_sets():
    msg = err(align_labels, ds_of([0, 1], ["neg", "meh"]), {0: "neg", 1: "pos"})
    assert (
        "['meh']" in msg and "model labels ['neg', 'pos']" in msg and "dataset labels ['neg', 'meh']" in msg
    )


def test_check_task_pair_vs_single():
    class Cfg:
        cahp_input = "single"

    check_task(ds_of([0], ["a"]), Cfg())
    assert "holds sentence pairs but the model was fine-tuned on single" in err(
        check_task, ds_of([0], ["a"], pairs=True), Cfg()
    )


# ---- splits ----------------------------------------------------------------------------------------


def test_splits_disjoint_stratified_seeded():
    labels = [0] * 600 + [1] * 300 + [2] * 100
    train = TextDataset([f"s{i}" for i in range(1000)], None, labels, ["a", "b", "c"], "train.tsv", "train")
    dev = ds_of([0, 1], ["a", "b"])
    sp = make_splits(train, dev, calib_size=100, select_size=200, seed=3)
    assert sp.calib.label_counts() == {"a": 60, "b": 30, "c": 10}
    assert sp.select.label_counts() == {"a": 120, "b": 60, "c": 20}
    assert not set(sp.calib.texts) & set(sp.select.texts)
    assert sp.eval is dev and "train.tsv" in sp.sources["calib"] and "mem" in sp.sources["eval"]
    again = make_splits(train, dev, calib_size=100, select_size=200, seed=3)
    assert again.calib.texts == sp.calib.texts and again.select.texts == sp.select.texts
    assert make_splits(train, dev, 100, 200, seed=4).calib.texts != sp.calib.texts
    sp2 = make_splits(train, None, calib_size=100, select_size=200)
    assert len(sp2.eval) == 700 and not set(sp2.eval.texts) & (set(sp2.calib.texts) | set(sp2.select.texts))
    assert "calibration size 2000 is larger than the 1000 training rows" in err(make_splits, train, dev, 2000)


# ---- batching + evaluation -----------------------------------------------------------------------------


def test_encode_and_evaluate_match_unbatched(tmp_path):
    from tests.train.test_train import tiny_classifier, tiny_tokenizer

    tok = tiny_tokenizer()
    model = tiny_classifier(tok, ["neg", "pos"])
    texts = [
        "the movie was good",
        "bad",
        "the food was awful and the room was bad too",
        "fine",
        "ok good",
    ] * 3
    ds = TextDataset(texts, None, [1, 0, 0, 1, 1] * 3, ["neg", "pos"], "mem", "dev")
    batches = encode(tok, ds, max_length=16, batch_size=4)
    assert sorted(int(i) for b in batches for i in b["index"]) == list(range(len(ds)))
    logits = predict_logits(model, batches)
    with torch.inference_mode():
        ref = torch.cat(
            [model(**tok([t], return_tensors="pt", truncation=True, max_length=16)).logits for t in texts]
        )
    torch.testing.assert_close(logits, ref, atol=1e-5, rtol=1e-4)  # padding and sorting change nothing
    acc = evaluate_accuracy(model, tok, ds, batch_size=4, max_length=16)
    assert acc == pytest.approx(float((ref.argmax(-1) == torch.tensor(ds.labels)).float().mean()))
    zero = torch.zeros(3, 4)
    masked = predict_logits(model, batches, mask=zero)
    assert not torch.allclose(masked, logits)  # the mask reaches the heads
    assert evaluate_accuracy(model, tok, batches=batches, mask=torch.ones(3, 4)) == acc


# ---- real data ----------------------------------------------------------------------------------------


@pytest.mark.realdata
def test_real_datasets(shared_data):
    sst5 = load_dataset(shared_data / "sst5" / "train.txt")
    assert len(sst5) == 8544 and sst5.label_names == ["1", "2", "3", "4", "5"]
    assert len(load_dataset(shared_data / "sst5", "dev")) == 1101
    sst2 = load_dataset(shared_data / "sst2" / "dev.tsv")
    assert len(sst2) == 872 and sst2.label_names == ["0", "1"]
    rte = load_dataset(shared_data / "rte", "validation")
    assert rte.is_pair and len(rte) == 277


def test_demo_data_is_shipped_and_balanced():
    from cahp_edge.data import DEMO_DATA as folder

    assert (folder / "sentiment_train.tsv").is_file()  # shipped as package data (pyproject)
    train, dev = load_dataset(folder, "train"), load_dataset(folder, "dev")
    assert train.label_names == dev.label_names == ["negative", "positive"]
    assert len(train) >= 400 and len(dev) >= 100 and not set(train.texts) & set(dev.texts)
    assert min(train.label_counts().values()) > 0.45 * len(train)


def test_hf_save_to_disk_folders(tmp_path):
    datasets = pytest.importorskip("datasets", reason="optional `datasets` package not installed")
    cl = datasets.ClassLabel(names=["neg", "pos"])
    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(
                {"sentence": ["a good one", "bad"], "label": [1, 0]}
            ).cast_column("label", cl),
            "validation": datasets.Dataset.from_dict({"sentence": ["ok"], "label": [1]}).cast_column(
                "label", cl
            ),
        }
    )
    dd.save_to_disk(str(tmp_path / "dd"))
    dd["train"].save_to_disk(str(tmp_path / "one"))
    ds = load_dataset(tmp_path / "dd")
    assert ds.texts == ["a good one", "bad"] and ds.labels == [1, 0] and ds.label_names == ["neg", "pos"]
    assert load_dataset(tmp_path / "dd", "dev").split == "validation"
    assert load_dataset(tmp_path / "one").label_names == ["neg", "pos"]
    assert "splits found: ['train', 'validation']" in err(load_dataset, tmp_path / "dd", "test")


def test_selection_rows_from_a_separate_dataset():
    def ds(prefix: str, n: int, source: str) -> TextDataset:
        texts, labels = [f"{prefix}{i}" for i in range(n)], [i % 2 for i in range(n)]
        return TextDataset(texts, None, labels, ["a", "b"], source)

    train, held = ds("t", 20, "train.tsv"), ds("h", 10, "held.tsv")
    sp = make_splits(train, None, calib_size=6, select_size=4, seed=0, select_ds=held)
    assert len(sp.calib) == 6 and set(sp.calib.texts) <= set(train.texts)
    assert len(sp.select) == 4 and set(sp.select.texts) <= set(held.texts)
    assert sorted(sp.select.labels) == [0, 0, 1, 1]  # stratified
    assert "held.tsv" in sp.sources["select"] and "train.tsv" in sp.sources["calib"]
    assert len(sp.eval) == 14  # the rest of train: the held-out rows are not the evaluation split


@pytest.mark.parametrize("fmt", ["tsv", "csv", "jsonl", "parquet"])
def test_unlabelled_rows_only_when_asked(tmp_path, fmt):
    """labels=False reads a table without a label column as unlabelled rows (for --select); the default
    still refuses it with the usual one-line error. A label column present is read as labels either way."""
    import json

    from cahp_edge.data import align_labels, load_dataset
    from cahp_edge.errors import DataError

    rows = [{"sentence1": f"first {i}", "sentence2": f"second {i}"} for i in range(5)]
    p = tmp_path / f"rows.{fmt}"
    if fmt == "jsonl":
        p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), p)
    else:
        sep = "\t" if fmt == "tsv" else ","
        body = "".join(f"{r['sentence1']}{sep}{r['sentence2']}\n" for r in rows)
        p.write_text(f"sentence1{sep}sentence2\n" + body)
    with pytest.raises(DataError, match="no label column"):
        load_dataset(str(p))
    ds = load_dataset(str(p), labels=False)
    assert not ds.labelled and ds.labels == [-1] * 5 and ds.label_names == []
    assert ds.texts == [r["sentence1"] for r in rows] and ds.pairs == [r["sentence2"] for r in rows]
    assert align_labels(ds, {0: "neg", 1: "pos"}) is ds  # nothing to align
    assert load_dataset(str(p), labels=False).subset([4, 0]).texts == ["first 4", "first 0"]
