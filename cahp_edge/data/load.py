"""Load labelled text datasets, align their labels with a model, split them.

    ds = load_dataset("sst5/train.txt")                      # or a folder + split="train"
    ds = align_labels(ds, model.config.id2label)             # dataset labels -> model ids
    sp = make_splits(ds, load_dataset("sst5/dev.txt"))       # calib / select from train, eval from dev

Formats: SST/fastText txt (``__label__N<TAB>text``), GLUE tsv with a header, csv, jsonl, parquet,
Hugging Face ``save_to_disk`` folders and hub names (both need the optional ``datasets`` package; hub
names need internet). A folder of ``train``/``dev``/``validation``/``test`` files is read by ``split``.
Every problem with the input raises :class:`DataError` (one line: what, why, fix); rows are never
dropped silently (only blank lines of a txt file are skipped).

Which split each number comes from: calibration (signatures, salience) and knee selection (the sweep)
are two disjoint, stratified, seeded subsets of the *training* file; final accuracy is measured on the
*evaluation* file (dev/validation), which selection never sees. See :func:`make_splits`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from cahp_edge.data import formats as fmt
from cahp_edge.data.dataset import EXTS, SPLIT_ALIASES, TextDataset
from cahp_edge.errors import DataError

_GENERIC = re.compile(r"LABEL_(\d+)")
_HUB = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?(:[\w.-]+)?$")


# ---- loading -------------------------------------------------------------------------------------
def _split_file(folder: Path, split: str | None) -> Path:
    files = [p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix in EXTS]
    wanted = SPLIT_ALIASES.get(split or "train", (split,))
    for stem in wanted:
        for p in files:
            if p.stem.lower() == stem or p.stem.lower().endswith(("_" + stem, "-" + stem)):
                return p
    raise DataError(
        f"no {split or 'train'} file in {folder}",
        f"files found: {[p.name for p in files] or 'none'}",
        "pass the file itself, or name it train/dev/validation/test with a supported extension",
    )


def load_dataset(
    spec: str | Path,
    split: str | None = None,
    *,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    label_column: str | None = None,
    label_names: list[str] | None = None,
    labels: bool = True,
    scores: bool = False,
) -> TextDataset:
    """Read a labelled dataset from a file, a folder (``split`` picks the file) or a hub name.

    ``label_names``: when the raw labels are integer ids 0..n-1 they are renamed in this order;
    otherwise it fixes the label order and every raw label must be one of them.
    ``labels=False``: a table without a label column is read as unlabelled rows (``ds.labelled`` is
    False, labels are -1) instead of being refused; a ``.txt`` file without ``__label__`` prefixes is read
    as plain text (one sentence, or ``text<TAB>pair``, per line).
    ``scores=True``: the label column holds graded similarity (STS): floats in ``ds.scores``.
    """

    kw = dict(
        text_column=text_column,
        text_pair_column=text_pair_column,
        label_column=label_column,
        label_names=label_names,
    )
    if not labels:
        kw["labels_required"] = False
    if scores:
        kw["scores"] = True
    path = Path(spec).expanduser()
    if not path.exists():
        if (
            isinstance(spec, str)
            and _HUB.match(spec)
            and not spec.startswith((".", "/", "~"))
            and Path(spec).suffix.lower() not in EXTS
        ):
            return fmt.read_hub(spec, split, **kw)
        raise DataError(
            f"dataset not found: {path}",
            "no such file or folder",
            "pass an existing file or folder (or a hub name like glue/sst2)",
        )
    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            return fmt.read_hf_dir(path, split, **kw)
        path = _split_file(path, split)
    if not path.is_file():  # a FIFO, socket or device would block or never end: refuse before opening
        raise DataError(f"dataset {path} is not a regular file", "pipes, sockets and devices are not read",
                        "save the data to a file and pass that")
    split = split or path.stem
    suffix = path.suffix.lower()
    if suffix == ".txt":
        if any(kw[k] for k in ("text_column", "text_pair_column", "label_column")):
            raise DataError(
                f"{path} is a `__label__` txt file and has no named columns",
                "",
                "drop --text-column/--label-column, or convert it to csv",
            )
        if scores:
            raise DataError(f"{path} is a txt file and has no score column", "",
                            "pass a tsv/csv/jsonl file with sentence1, sentence2 and score columns")
        return fmt.read_sst(path, split, label_names, labels_required=labels)
    if suffix in (".tsv", ".csv"):
        return fmt.read_delimited(path, split, "\t" if suffix == ".tsv" else ",", **kw)
    if suffix in (".jsonl", ".json"):
        return fmt.read_jsonl(path, split, **kw)
    if suffix == ".parquet":
        return fmt.read_parquet(path, split, **kw)
    raise DataError(
        f"unsupported dataset file type {suffix or '(none)'}: {path}",
        f"supported: {', '.join(EXTS)}",
        "convert the file to csv, tsv, jsonl or parquet",
    )


# ---- labels ----------------------------------------------------------------------------------------


def _norm(s: str) -> str:
    s = str(s).strip().lower()
    return str(int(float(s))) if re.fullmatch(r"-?\d+(\.0+)?", s) else s


def align_labels(ds: TextDataset, id2label: dict) -> TextDataset:
    """Re-index ``ds`` so its labels are the model's ids (label_names become the model's, in id order).
    Unlabelled rows are returned as they are."""
    if not ds.labelled:
        return ds
    model = {int(k): str(v) for k, v in (id2label or {}).items()}
    n = len(model)
    if n == 0 or sorted(model) != list(range(n)):
        raise DataError(
            "the model's id2label is missing or not 0..n-1",
            f"id2label={id2label}",
            "fine-tune the model with `cahp-edge finetune`, which records its labels",
        )
    names = [model[i] for i in range(n)]
    if all(_GENERIC.fullmatch(v) for v in names):
        ints = [_norm(s) for s in ds.label_names]
        if all(re.fullmatch(r"\d+", s) for s in ints) and all(int(s) < n for s in ints):
            mapping = [int(s) for s in ints]  # integer labels are already ids
        elif len(ds.label_names) == n:
            mapping = list(range(n))  # sorted dataset labels -> LABEL_0..LABEL_{n-1}
        else:
            raise DataError(
                f"cannot map {ds.num_labels} dataset labels {ds.label_names} onto the model's generic "
                f"labels {names}",
                "the model has no label names",
                "evaluate with data holding every label, or set id2label in config.json",
            )
    else:
        by_name = {}
        for i, v in enumerate(names):
            by_name.setdefault(v, i)
            by_name.setdefault(_norm(v), i)
        mapping = [by_name.get(s, by_name.get(_norm(s))) for s in ds.label_names]
        ints = [_norm(s) for s in ds.label_names]
        if all(m is None for m in mapping) and all(re.fullmatch(r"\d+", s) and int(s) < n for s in ints):
            # no label matches by name and all are ids 0..n-1: ids, as the device runner reads eval.jsonl
            mapping = [int(s) for s in ints]
        missing = [s for s, m in zip(ds.label_names, mapping, strict=True) if m is None]
        if missing:
            raise DataError(
                f"labels {missing} of {ds.source} are not in the model's label set",
                f"dataset labels {ds.label_names}, model labels {names}",
                "use data with the model's labels, or name them with --label-names",
            )
    return TextDataset(ds.texts, ds.pairs, [mapping[y] for y in ds.labels], names, ds.source, ds.split)


def check_task(ds: TextDataset, config) -> None:
    """Refuse a pair dataset for a model fine-tuned on single texts (and vice versa), when recorded."""
    task = getattr(config, "cahp_input", None)  # written by `cahp-edge finetune`: "single" | "pair"
    if task in ("single", "pair") and (task == "pair") != ds.is_pair:
        have = "sentence pairs" if ds.is_pair else "single sentences"
        raise DataError(
            f"{ds.source} holds {have} but the model was fine-tuned on {task} inputs",
            "",
            "pass data of the model's task, or pick the right --text-column/--text-pair-column",
        )


# ---- splits ----------------------------------------------------------------------------------------


@dataclass
class Splits:
    calib: TextDataset  # signatures + salience (from the training file)
    select: TextDataset  # knee / head-count sweep (from the training file, disjoint from calib)
    eval: TextDataset  # reported accuracy (the evaluation file; never seen by selection)
    sources: dict[str, str] = field(default_factory=dict)  # human-readable provenance of each split


def _stratified(labels: list[int], pool: list[int], size: int, rng) -> list[int]:
    by: dict[int, list[int]] = {}
    for i in pool:
        by.setdefault(labels[i], []).append(i)
    total = len(pool)
    quota = {k: size * len(v) // total for k, v in by.items()}
    rest = size - sum(quota.values())
    # largest remainder, ties by label id: deterministic
    order = sorted(by, key=lambda k: (-(size * len(by[k]) % total), k))
    for k in order[:rest]:
        quota[k] += 1
    picked = []
    for k in sorted(by):
        idx = by[k][:]
        rng.shuffle(idx)
        picked += idx[: quota[k]]
    return sorted(picked)


def make_splits(
    train_ds: TextDataset,
    eval_ds: TextDataset | None = None,
    calib_size: int = 512,
    select_size: int = 1000,
    seed: int = 0,
    select_ds: TextDataset | None = None,
) -> Splits:
    """Disjoint stratified seeded calib/select subsets of the training data; eval from ``eval_ds``.

    Without ``eval_ds`` the eval split is the rest of the training data (reported as such).
    ``select_size`` is capped at what is left after calibration. With ``select_ds`` (data the model
    was not fine-tuned on) the selection rows come from it instead of the training data.
    """
    import random

    n = len(train_ds)
    if calib_size < 1 or calib_size > n:
        raise DataError(
            f"calibration size {calib_size} is larger than the {n} training rows"
            if calib_size > n
            else f"calibration size must be >= 1, got {calib_size}",
            "",
            f"pass --calib-size between 1 and {n}",
        )
    if select_size < 1:
        raise DataError(
            f"selection size must be >= 1, got {select_size}", "", "pass a positive --select-size"
        )
    rng = random.Random(seed)
    calib = _stratified(train_ds.labels, list(range(n)), calib_size, rng)
    left = sorted(set(range(n)) - set(calib))
    if not left:
        raise DataError(
            f"no training rows left for knee selection after {calib_size} calibration rows",
            f"the training data has {n} rows",
            "pass a smaller --calib-size or more data",
        )
    src = train_ds.source
    sources = {"calib": f"{len(calib)} stratified rows of {src} (seed {seed})"}
    if select_ds is not None:
        pool = list(range(len(select_ds)))
        chosen = _stratified(select_ds.labels, pool, min(select_size, len(pool)), rng)
        sources["select"] = f"{len(chosen)} stratified rows of {select_ds.source} (seed {seed})"
        select_part = select_ds.subset(chosen)
        select = []
    else:
        select = _stratified(train_ds.labels, left, min(select_size, len(left)), rng)
        sources["select"] = f"{len(select)} stratified rows of {src}, disjoint from calib (seed {seed})"
        select_part = train_ds.subset(select)
    if eval_ds is None:
        rest = sorted(set(left) - set(select))
        if not rest:
            raise DataError(
                "no rows left for evaluation",
                f"{n} training rows all went to calib/select",
                "pass an evaluation file (--eval) or smaller sizes",
            )
        ev = train_ds.subset(rest)
        sources["eval"] = f"{len(rest)} remaining rows of {src} (no evaluation file given)"
    else:
        ev = eval_ds
        sources["eval"] = f"all {len(eval_ds)} rows of {eval_ds.source}"
    return Splits(train_ds.subset(calib), select_part, ev, sources)
