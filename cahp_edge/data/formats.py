"""File readers behind :func:`cahp_edge.data.load_dataset`: txt, tsv/csv, jsonl, parquet, HF datasets.

Each reader returns a :class:`TextDataset` or raises :class:`DataError` naming the file, line and fix.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path

from cahp_edge.data.dataset import (
    LABEL_DEFAULTS,
    MISSING,
    PAIR_DEFAULTS,
    SCORE_DEFAULTS,
    SPLIT_ALIASES,
    TEXT_DEFAULTS,
    TextDataset,
)
from cahp_edge.errors import DataError

_SST_LINE = re.compile(r"__label__(\S+)[ \t](.*)", re.S)

def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(
            f"cannot read dataset file {path}", str(e), "check the path and its permissions"
        ) from e
    if not raw.strip():
        raise DataError(f"dataset file {path} is empty", "", "pass a file with labelled rows")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        enc = _guess_encoding(raw)
        raise DataError(
            f"dataset file {path} is not UTF-8 text",
            f"invalid byte at offset {e.start}" + (f"; it looks like {enc}" if enc else ""),
            f"re-save it as UTF-8 (e.g. iconv -f {enc or 'SOURCE-ENCODING'} -t utf-8)",
        ) from e


def _guess_encoding(raw: bytes) -> str | None:
    """The encoding the hint should name: UTF-16/32 by their byte-order marks or NUL patterns; latin1
    only for single-byte text (no NULs), else unknown."""
    for bom, name in ((b"\xff\xfe\x00\x00", "utf-32le"), (b"\x00\x00\xfe\xff", "utf-32be"),
                      (b"\xff\xfe", "utf-16le"), (b"\xfe\xff", "utf-16be")):
        if raw.startswith(bom):
            return name
    head = raw[:4096]
    if head and head.count(b"\x00") > len(head) // 4:
        return "utf-16le" if head[1::2].count(0) > head[::2].count(0) else "utf-16be"
    return "latin1" if b"\x00" not in head else None


def _label_str(v, where: str) -> str:
    if isinstance(v, bool):
        v = int(v)
    if isinstance(v, float):
        if math.isnan(v):
            raise DataError(f"missing label at {where}", "the label is NaN", "fill in or remove that row")
        if v.is_integer():
            v = int(v)
    if isinstance(v, (list, dict)):
        raise DataError(
            f"label at {where} is a {type(v).__name__}",
            "one label per row is expected",
            "use a single-label column",
        )
    s = "" if v is None else str(v).strip()
    if s.lower() in MISSING:
        raise DataError(
            f"missing label at {where}", f"label value {s!r} is empty or NaN", "fill in or remove that row"
        )
    return s


def _score(v, where: str) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        x = math.nan
    if not math.isfinite(x):
        raise DataError(f"score at {where} is not a number", f"found {str(v)[:40]!r}",
                        "fill in a numeric similarity score or remove that row")
    return x


def _text_str(v, where: str) -> str:
    if isinstance(v, float) and math.isnan(v):
        v = None
    if isinstance(v, (list, dict)):
        raise DataError(f"text at {where} is a {type(v).__name__}", "expected a string", "pick a text column")
    s = "" if v is None else str(v)
    if not s.strip():
        raise DataError(f"empty text at {where}", "every row needs text", "fill in or remove that row")
    return s


def _sort_labels(names) -> list[str]:
    names = set(names)
    try:
        return sorted(names, key=lambda s: (float(s), s))
    except ValueError:
        return sorted(names)


def _finish(texts, pairs, raw_labels, label_names, source, split, where) -> TextDataset:
    if not texts:
        raise DataError(f"dataset {source} has no rows", "", "pass a file with labelled rows")
    if label_names:
        names = [str(n) for n in label_names]
        if all(re.fullmatch(r"\d+", s) for s in raw_labels) and {int(s) for s in raw_labels} <= set(
            range(len(names))
        ):
            raw_labels = [names[int(s)] for s in raw_labels]  # integer ids named by --label-names, in order
        unknown = sorted(set(raw_labels) - set(names))
        if unknown:
            raise DataError(
                f"labels {unknown[:10]} in {source} are not in the given label names {names}",
                "",
                "fix --label-names or the data",
            )
    else:
        names = _sort_labels(raw_labels)
    ids = {n: i for i, n in enumerate(names)}
    return TextDataset(
        list(texts),
        None if pairs is None else list(pairs),
        [ids[s] for s in raw_labels],
        names,
        source,
        split,
    )


def read_plain(path: Path, split: str, lines: list[str] | None = None) -> TextDataset:
    """Unlabelled text: one sentence per line, or ``text<TAB>pair`` per line (every line alike)."""
    rows = [(n, line.removesuffix("\r")) for n, line in enumerate(lines or _read_text(path).split("\n"), 1)]
    rows = [(n, line) for n, line in rows if line.strip()]
    if not rows:
        raise DataError(f"text file {path} has no lines with text", "",
                        "pass a file with one sentence per line")
    tabbed = [n for n, line in rows if "\t" in line]
    if tabbed and len(tabbed) != len(rows):
        plain = next(n for n, line in rows if "\t" not in line)
        raise DataError(f"mixed single/pair lines in {path}", f"line {tabbed[0]} has a tab (a pair), line "
                        f"{plain} has none", "write every line as text<TAB>pair, or none")
    texts, pairs = [], [] if tabbed else None
    for n, line in rows:
        a, _, b = line.partition("\t")
        texts.append(_text_str(a, f"{path}:{n}"))
        if pairs is not None:
            pairs.append(_text_str(b, f"{path}:{n} second text"))
    return TextDataset(texts, pairs, [-1] * len(texts), [], str(path), split)


def read_sst(path: Path, split: str, label_names, labels_required: bool = True) -> TextDataset:
    texts, raw = [], []
    lines = _read_text(path).split("\n")
    first = next((line.removesuffix("\r") for line in lines if line.strip()), "")
    if not labels_required and _SST_LINE.fullmatch(first) is None:
        return read_plain(path, split, lines)  # plain sentences: unlabelled text for pruning
    for n, line in enumerate(lines, 1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue  # blank lines carry no row
        m = _SST_LINE.fullmatch(line)
        if m is None:
            raise DataError(
                f"{path}:{n} is not a `__label__LABEL<TAB>text` line",
                f"it starts with {line[:40]!r}",
                "fix that line, or use a tsv/csv file with a header",
            )
        texts.append(_text_str(m.group(2), f"{path}:{n}"))
        raw.append(m.group(1))
    return _finish(texts, None, raw, label_names, str(path), split, path)


def _pick(columns, given, defaults, what, flag, path):
    if given is not None:
        if given not in columns:
            raise DataError(
                f"{what} column {given!r} not found in {path}",
                f"columns found: {list(columns)}",
                f"pass one of them with {flag}",
            )
        return given
    for c in defaults:
        if c in columns:
            return c
    raise DataError(f"no {what} column in {path}", f"columns found: {list(columns)}", f"name it with {flag}")


def _from_columns(
    cols: dict[str, list],
    path,
    split,
    text_column,
    text_pair_column,
    label_column,
    label_names,
    row_where=None,
    labels_required: bool = True,
    scores: bool = False,
) -> TextDataset:
    columns = list(cols)
    pair_col = text_pair_column
    if text_column is None and text_pair_column is None:
        for a, b in PAIR_DEFAULTS:
            if a in cols and b in cols:
                text_column, pair_col = a, b
                break
    tcol = _pick(columns, text_column, TEXT_DEFAULTS, "text", "--text-column", path)
    if pair_col is not None:
        pair_col = _pick(columns, pair_col, (), "text-pair", "--text-pair-column", path)
    if not labels_required and label_column is None and not any(c in cols for c in LABEL_DEFAULTS):
        lcol = None  # unlabelled rows (e.g. --select): the caller labels them with the model
    else:
        lcol = _pick(columns, label_column, SCORE_DEFAULTS if scores else LABEL_DEFAULTS, "score" if scores
                     else "label", "--label-column", path)
    where = row_where or (lambda i: f"{path} row {i + 1}")
    texts = [_text_str(v, f"{where(i)} column {tcol!r}") for i, v in enumerate(cols[tcol])]
    pairs = None
    if pair_col is not None:
        empty = [
            i
            for i, v in enumerate(cols[pair_col])
            if v is None or not str(v).strip() or (isinstance(v, float) and math.isnan(v))
        ]
        if empty:
            raise DataError(
                f"mixed single/pair rows in {path}",
                f"{len(empty)} rows have no {pair_col!r} text, first at {where(empty[0])}",
                "fill in the second text or drop those rows",
            )
        pairs = [_text_str(v, f"{where(i)} column {pair_col!r}") for i, v in enumerate(cols[pair_col])]
    if lcol is None:
        if not texts:
            raise DataError(f"dataset {path} has no rows", "", "pass a file with rows")
        return TextDataset(texts, pairs, [-1] * len(texts), [], str(path), split)
    if scores:
        vals = [_score(v, f"{where(i)} column {lcol!r}") for i, v in enumerate(cols[lcol])]
        return TextDataset(texts, pairs, [-1] * len(texts), [], str(path), split, scores=vals)
    raw = [_label_str(v, f"{where(i)} column {lcol!r}") for i, v in enumerate(cols[lcol])]
    return _finish(texts, pairs, raw, label_names, str(path), split, path)


def read_delimited(path: Path, split, delimiter, **kw) -> TextDataset:
    text = _read_text(path)
    # GLUE tsv files contain bare quotes inside sentences: quoting must be off for tab-separated files
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting, strict=True)
        header = next(reader, None)
        if header is None:
            raise DataError(f"dataset file {path} is empty", "", "pass a file with a header and rows")
        header = [h.strip() for h in header]
        if len(set(header)) != len(header):
            raise DataError(
                f"duplicate column names in {path}", f"columns found: {header}", "rename the columns"
            )
        cols: dict[str, list] = {h: [] for h in header}
        lines: list[int] = []
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                if row and row[0]:
                    raise DataError(
                        f"{path}:{reader.line_num} has 1 field, expected {len(header)}", "", "fix that row"
                    )
                continue  # a truly empty line is no row
            if len(row) != len(header):
                raise DataError(
                    f"{path}:{reader.line_num} has {len(row)} fields, expected {len(header)}",
                    f"columns are {header}",
                    "quote fields that contain the delimiter, or fix that row",
                )
            for h, v in zip(header, row, strict=True):
                cols[h].append(v)
            lines.append(reader.line_num)
    except csv.Error as e:
        raise DataError(
            f"{path} is not valid {'tsv' if delimiter == chr(9) else 'csv'}",
            str(e),
            "fix the quoting on that line",
        ) from e
    if not lines:
        raise DataError(f"dataset file {path} has a header but no rows", "", "add labelled rows")
    return _from_columns(cols, path, split, row_where=lambda i: f"{path}:{lines[i]}", **kw)


def read_jsonl(path: Path, split, **kw) -> TextDataset:
    rows, lines = [], []
    text = _read_text(path)
    if path.suffix == ".json" and text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(
                f"{path} is not valid JSON", str(e), "fix the file or write one object per line"
            ) from e
        lines = list(range(1, len(rows) + 1))
    else:
        for n, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(
                    f"{path}:{n} is not valid JSON", str(e), "write one JSON object per line"
                ) from e
            lines.append(n)
    if not rows:
        raise DataError(f"dataset file {path} has no rows", "", "write one JSON object per line")
    bad = [i for i, r in enumerate(rows) if not isinstance(r, dict)]
    if bad:
        raise DataError(f"{path}:{lines[bad[0]]} is not a JSON object", "", "write one object per line")
    keys = list(dict.fromkeys(k for r in rows for k in r))
    cols = {k: [r.get(k) for r in rows] for k in keys}
    return _from_columns(cols, path, split, row_where=lambda i: f"{path}:{lines[i]}", **kw)


def read_parquet(path: Path, split, **kw) -> TextDataset:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several unrelated types for a bad file
        raise DataError(
            f"{path} is not a readable parquet file",
            f"{type(e).__name__}: {e}",
            "re-export it with pandas.DataFrame.to_parquet",
        ) from e
    if table.num_rows == 0:
        raise DataError(f"dataset file {path} has no rows", "", "pass a file with labelled rows")
    return _from_columns(table.to_pydict(), path, split, **kw)


def _from_hf(ds, source: str, split: str | None, **kw) -> TextDataset:
    if hasattr(ds, "keys") and not hasattr(ds, "features"):  # DatasetDict
        names = list(ds.keys())
        wanted = SPLIT_ALIASES.get(split or "train", (split,))
        key = next((k for k in wanted if k in names), None)
        if key is None:
            raise DataError(
                f"split {split!r} not in {source}", f"splits found: {names}", "pass --split with one of them"
            )
        ds, split = ds[key], key
    cols = {c: ds[c] for c in ds.column_names}
    lcol = kw.get("label_column") or next((c for c in LABEL_DEFAULTS if c in cols), None)
    feat = ds.features.get(lcol) if lcol else None
    if feat is not None and getattr(feat, "names", None) and not kw.get("label_names"):
        if any(v is None or v < 0 for v in cols[lcol]):
            raise DataError(
                f"split {split!r} of {source} has unlabelled rows (label -1)",
                "test splits often do",
                "evaluate on the validation split",
            )
        kw["label_names"] = list(feat.names)  # ClassLabel: ints are already ids into these names
    return _from_columns(cols, source, split or "train", **kw)


def read_hf_dir(path: Path, split, **kw) -> TextDataset:
    try:
        import datasets
    except ImportError as e:
        raise DataError(
            f"{path} is a Hugging Face datasets folder",
            "the `datasets` package is not installed",
            "pip install datasets",
        ) from e
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:
        raise DataError(
            f"could not read the datasets folder {path}",
            f"{type(e).__name__}: {e}",
            "pass a folder written by Dataset.save_to_disk",
        ) from e
    return _from_hf(ds, str(path), split, **kw)


def read_hub(name: str, split, **kw) -> TextDataset:
    try:
        import datasets
    except ImportError as e:
        raise DataError(
            f"dataset {name!r} is neither a local file nor loadable from the hub",
            "the `datasets` package is not installed",
            "pass a local file, or pip install datasets",
        ) from e
    repo, _, config = name.partition(":")
    attempts = [(repo, config or None)]
    if not config and repo.count("/") == 1:
        attempts.append(tuple(repo.split("/")))  # "glue/sst2" means dataset glue, config sst2
    err = None
    for r, c in attempts:
        try:
            return _from_hf(datasets.load_dataset(r, c), name, split, **kw)
        except DataError:
            raise
        except Exception as e:  # network, not found, bad config: report the first failure
            err = err or e
    raise DataError(
        f"could not load dataset {name!r} from the hub",
        f"{type(err).__name__}: {str(err)[:200]}",
        "check the name and your network, or pass a local file",
    )


