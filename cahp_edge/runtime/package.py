"""Read a package folder: model, tokenizer, labels, optional eval data and settings; verify checksums.

Layout (what `cahp-edge build` writes and the runner reads)::

    model.onnx | model.ort   the graph (model.onnx wins when both exist, unless --format ort)
    tokenizer.json           Hugging Face `tokenizers` file
    config.json              needs id2label (classifiers); pad_token_id is used for padding when present;
                             ``cahp_task`` names the task (sequence-classification when absent)
    eval.jsonl | eval.tsv    optional evaluation data (format below)
    target.json              optional: the target profile (threads, execution_providers, benchmark)
    SHA256SUMS               optional: "<sha256>  <relative path>" lines, checked before anything runs

Eval data: ``eval.jsonl`` has one object per line, ``{"label": 0, "text": "...", "text_pair": "..."}``
(``text_pair`` only for sentence-pair tasks); ``label`` is an integer id of config.json's id2label or
one of its names. ``eval.tsv`` has a header row ``label<TAB>text`` (or ``label<TAB>text<TAB>text_pair``)
and no quoting: for text that holds tabs or newlines use jsonl. Sentence-embedding packages score pairs
instead: ``{"text": "...", "text_pair": "...", "score": 4.2}`` (graded similarity, STS-style).
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from . import RunnerError

MODEL_NAMES = ("model.onnx", "model.ort")
EVAL_NAMES = ("eval.jsonl", "eval.tsv")


@dataclass
class EvalData:
    texts: list[str]
    pairs: list[str] | None
    labels: list[int]
    source: str
    sha256: str
    scores: list[float] | None = None  # embedding packages: graded similarity of each pair


@dataclass
class Package:
    root: Path
    model: Path
    tokenizer: Path
    id2label: dict[int, str]
    pad_token_id: int | None
    max_positions: int | None  # config's max_position_embeddings: longest input the model can take
    target: dict | None
    eval_file: Path | None
    checksums_verified: int  # how many files SHA256SUMS listed and we checked (0 when absent)
    task: str = "sequence-classification"

    @property
    def embeds(self) -> bool:
        return self.task == "sentence-embedding"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _verify_sums(root: Path) -> int:
    sums = root / "SHA256SUMS"
    if not sums.is_file():
        return 0
    bad, missing, n = [], [], 0
    for line in sums.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        digest, _, name = line.partition(" ")
        name = name.strip().lstrip("*")
        p = (root / name).resolve()
        if root.resolve() not in p.parents:
            raise RunnerError("package", f"SHA256SUMS in {root} names {name!r} outside the package",
                              "the package may be tampered with", "rebuild it with `cahp-edge build`")
        n += 1
        if not p.is_file():
            missing.append(name)
        elif sha256_file(p) != digest.lower():
            bad.append(name)
    if missing or bad:
        why = "; ".join(x for x in (f"missing: {', '.join(missing)}" if missing else "",
                                    f"checksum mismatch: {', '.join(bad)}" if bad else "") if x)
        raise RunnerError("package", f"package {root} does not match its SHA256SUMS", why,
                          "copy the package again (a transfer was cut short or a file was edited)")
    return n


def _read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunnerError("package", f"cannot read {path}", str(e), "copy the package again") from None
    if not isinstance(obj, dict):
        raise RunnerError("package", f"{path} is not a JSON object", "", "copy the package again")
    return obj


def open_package(root: Path, fmt: str | None = None, data: Path | None = None) -> Package:
    root = Path(root)
    if not root.is_dir():
        raise RunnerError("package", f"package folder {root} not found", "no such directory",
                          "pass the folder written by `cahp-edge build` (or an exported model folder)")
    verified = _verify_sums(root)
    names = [f"model.{fmt}"] if fmt else list(MODEL_NAMES)
    model = next((root / n for n in names if (root / n).is_file()), None)
    missing = [n for n in ("tokenizer.json", "config.json") if not (root / n).is_file()]
    if model is None:
        missing.insert(0, " or ".join(names))
    if missing:
        raise RunnerError("package", f"package {root} is incomplete", f"missing {', '.join(missing)}",
                          "rebuild it with `cahp-edge build` or copy the missing files")
    config = _read_json(root / "config.json")
    raw = config.get("id2label") or {}
    try:
        id2label = {int(k): str(v) for k, v in raw.items()}
    except (ValueError, AttributeError):
        id2label = {}
    task = str(config.get("cahp_task") or "sequence-classification")
    if task == "sentence-embedding":
        id2label = {}  # an embedding model has no labels (config's default LABEL_0/1 mean nothing)
    elif not id2label or sorted(id2label) != list(range(len(id2label))):
        raise RunnerError("package", f"{root / 'config.json'} has no usable id2label",
                          f"id2label={raw!r}", "export the model from a fine-tuned classifier")
    pad = config.get("pad_token_id")
    maxpos = config.get("max_position_embeddings")
    target = _read_json(root / "target.json") if (root / "target.json").is_file() else None
    eval_file = Path(data) if data is not None else next(
        (root / n for n in EVAL_NAMES if (root / n).is_file()), None)
    if eval_file is not None and not eval_file.is_file():
        raise RunnerError("data", f"eval data {eval_file} not found", "no such file",
                          "pass an existing --data file (eval.jsonl or eval.tsv)")
    return Package(root, model, root / "tokenizer.json", id2label, pad if isinstance(pad, int) else None,
                   maxpos if isinstance(maxpos, int) else None, target, eval_file, verified, task)


def _label_id(v, id2label: dict[int, str], where: str) -> int:
    names = {name: i for i, name in id2label.items()}
    if isinstance(v, bool):
        v = None
    if isinstance(v, int) or (isinstance(v, str) and v.strip().lstrip("-").isdigit()):
        i = int(v)
        if i in id2label:
            return i
    elif isinstance(v, str) and v in names:
        return names[v]
    raise RunnerError("data", f"{where}: label {v!r} is not one of the model's labels",
                      f"ids {sorted(id2label)} or names {list(names)}",
                      "write label ids of config.json's id2label (or its names)")


def _score(v, where: str) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        x = float("nan")
    if x != x or x in (float("inf"), float("-inf")):
        raise RunnerError("data", f"{where}: score {v!r} is not a number", "",
                          'write {"text": "...", "text_pair": "...", "score": 3.5} per line')
    return x


def load_eval(path: Path, id2label: dict[int, str], limit: int | None = None,
              scored: bool = False) -> EvalData:
    """Labelled rows for classifiers; ``scored``: text pairs with a graded ``score`` (embeddings)."""
    texts, pairs, labels, scores = [], [], [], []
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RunnerError("data", f"cannot read eval data {path}", str(e), "pass a UTF-8 file") from None
    if path.suffix == ".tsv":
        rows = list(csv.reader(raw.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE))
        if not rows or rows[0][:2] != ["label", "text"]:
            raise RunnerError("data", f"{path} has no `label<TAB>text[<TAB>text_pair]` header",
                              f"first row: {rows[0] if rows else 'empty file'}", "add the header row")
        width = len(rows[0])
        records = []
        for n, r in enumerate(rows[1:], start=2):
            if not any(r):
                continue
            if len(r) != width:
                raise RunnerError("data", f"{path}:{n}: {len(r)} columns, header has {width}",
                                  "a tab inside the text?", "use eval.jsonl for text with tabs")
            records.append((n, dict(zip(rows[0], r, strict=True))))
    else:
        records = []
        for n, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise RunnerError("data", f"{path}:{n} is not JSON", str(e),
                                  "write one JSON object per line") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise RunnerError("data", f"{path}:{n} has no string \"text\"", "",
                                  'write {"label": 0, "text": "..."} per line')
            records.append((n, obj))
    if not records:
        raise RunnerError("data", f"eval data {path} is empty", "", "pass a file with at least one example")
    is_pair = "text_pair" in records[0][1]
    if scored and not is_pair:
        raise RunnerError("data", f"{path} has no text_pair", "an embedding model is scored on graded pairs",
                          'write {"text": "...", "text_pair": "...", "score": 3.5} per line')
    for n, rec in records[: limit or None]:
        if ("text_pair" in rec) != is_pair:
            raise RunnerError("data", f"{path}:{n}: text_pair present on some rows only", "",
                              "give every row a text_pair, or none")
        texts.append(str(rec["text"]))
        if is_pair:
            pairs.append(str(rec["text_pair"]))
        if scored:
            scores.append(_score(rec.get("score"), f"{path}:{n}"))
        else:
            labels.append(_label_id(rec.get("label"), id2label, f"{path}:{n}"))
    return EvalData(texts, pairs if is_pair else None, labels, str(path), sha256_file(path),
                    scores if scored else None)
