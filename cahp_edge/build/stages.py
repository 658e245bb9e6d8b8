"""One thin adapter per stage: call the stage module's public function, write into ``art``, return a summary.

Each function here is what :mod:`cahp_edge.build.pipeline` hands to the cache: it receives a directory
that does not exist yet, lets the stage module write it, and returns a small JSON-able summary
(numbers for the one-line progress message, the manifest and the report). No stage logic lives
here: pruning, training, export, quantization and measurement belong to their own modules.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

Progress = Callable[[str, int, int], None]  # (task, done, total); rendered by the CLI only


def _with_progress(fn: Callable, progress: Progress | None, task: str, **kw: Any) -> Any:
    """Call ``fn(**kw)``, passing a progress callback when the stage function accepts one."""
    params = inspect.signature(fn).parameters
    if progress is not None and "progress" in params:
        kw["progress"] = lambda done, total, *_: progress(task, int(done), int(total))
    return fn(**{k: v for k, v in kw.items() if k in params or _has_var_kw(params)})


def _has_var_kw(params) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, default=str) + "\n", encoding="utf-8")


# ---- data ---------------------------------------------------------------------------------------
def embeds(opts) -> bool:
    return opts.task == "sentence-embedding"


def tags(opts) -> bool:
    return opts.task == "token-classification"


def load_data(opts, id2label: dict) -> tuple[Any, Any, Any]:
    """Training, evaluation and (optional) selection datasets with labels aligned to the model's.

    Token classifiers and embedding models (``opts.task``, resolved by the build) read their own kinds of
    rows: cahp_edge.build.tagged_data and cahp_edge.build.embedding_data."""
    from cahp_edge.data import align_labels, load_dataset

    cols = dict(
        text_column=opts.text_column, text_pair_column=opts.text_pair_column, label_column=opts.label_column
    )
    if tags(opts):
        from cahp_edge.build import tagged_data

        return tagged_data.load(opts, id2label)
    if embeds(opts):
        from cahp_edge.build import embedding_data

        return embedding_data.load(opts)
    # training rows may come without labels as plain text (a .txt file without __label__ prefixes):
    # label_rows() labels them with the dense model. A table without a label column stays an error: a
    # misnamed label column must not silently become "no labels".
    plain = Path(str(opts.data)).suffix.lower() == ".txt"
    train = align_labels(load_dataset(opts.data, "train", **cols, labels=not plain), id2label)
    ev = align_labels(load_dataset(opts.eval, "dev", **cols), id2label) if opts.eval else None
    # selection rows may come without labels: label_rows() labels them with the dense model first
    sel = None
    if opts.select:
        sel = align_labels(load_dataset(opts.select, "train", **cols, labels=False), id2label)
    return train, ev, sel


def label_rows(art: Path, model_dir: Path, opts, id2label: dict, which: str = "select") -> dict:
    """Unlabelled --select (or --data) rows, labelled with the dense model's predictions, as
    ``{which}.jsonl`` (the columns the build reads, so downstream stages load it like any labelled file)."""
    from cahp_edge.data import check_task, load_dataset
    from cahp_edge.model.evaluate import pseudo_label
    from cahp_edge.model.load import load_model

    lm = load_model(model_dir, trust_pickle=opts.trust_pickle, require_classifier=True)
    cols = dict(text_column=opts.text_column, text_pair_column=opts.text_pair_column, label_column=None)
    raw = load_dataset(getattr(opts, which), "train", **cols, labels=False)
    check_task(raw, lm.model.config)
    ds = pseudo_label(lm.model, lm.tokenizer, raw, opts.max_length, opts.batch_size)
    keys = (opts.text_column or "text", opts.text_pair_column or "text_pair", opts.label_column or "label")
    art.mkdir()
    with open(art / f"{which}.jsonl", "w", encoding="utf-8") as f:
        for i, (text, label) in enumerate(zip(ds.texts, ds.labels, strict=True)):
            row = {keys[2]: ds.label_names[label], keys[0]: text}
            if ds.pairs is not None:
                row[keys[1]] = ds.pairs[i]
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return {"rows": len(ds), "labels": ds.label_counts(), "which": which}


def splits(opts, id2label: dict):
    from cahp_edge.data import make_splits

    train, ev, sel = load_data(opts, id2label)
    if tags(opts):
        from cahp_edge.build import tagged_data

        sp = tagged_data.splits(train, ev, opts.calib_size, opts.select_size, opts.seed, sel)
    else:
        sp = make_splits(
            train,
            ev,
            calib_size=min(opts.calib_size, max(1, len(train) - 1)),
            select_size=opts.select_size,
            seed=opts.seed,
            select_ds=sel,
        )
    if opts.eval_limit:
        sp.eval = sp.eval.subset(range(min(opts.eval_limit, len(sp.eval))))
        sp.sources["eval"] += f", first {len(sp.eval)} rows"
    return sp


def selects_on_finetuning_data(opts, model_dir: Path) -> bool:
    """True when knee-selection rows come from the data the model was fine-tuned on (cahp-edge finetune
    records it): the selection accuracy is then optimistic and the knee keeps too few heads."""
    from cahp_edge.train.finetune import META_FILE

    if opts.select:
        return False
    try:
        trained_on = json.loads((Path(model_dir) / META_FILE).read_text(encoding="utf-8"))["train_data"]
        return Path(trained_on).expanduser().resolve() == Path(opts.data).expanduser().resolve()
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _eval_rows(opts, ev, id2label: dict) -> tuple[list[dict], list[str]]:
    """(rows of the runner's eval.jsonl, the model's label names) for the build's task: a label per text
    (classifiers), a graded pair (embeddings), or words with gold tags (taggers)."""
    if tags(opts):
        from cahp_edge.data.tagged import eval_rows

        return eval_rows(ev), [str(id2label[k]) for k in sorted(id2label, key=int)]
    rows = []
    for i, (text, label) in enumerate(zip(ev.texts, ev.labels, strict=True)):
        row = {"score": ev.scores[i]} if embeds(opts) else {"label": ev.label_names[label]}
        row["text"] = text
        if ev.pairs is not None:
            row["text_pair"] = ev.pairs[i]
        rows.append(row)
    return rows, ev.label_names


def write_eval(art: Path, opts, id2label: dict, model_dir: Path | None = None) -> dict:
    """The evaluation split in the device-side runner's format (eval.jsonl), shipped in every package."""
    sp = splits(opts, id2label)
    art.mkdir()
    notes = []
    rows, names = _eval_rows(opts, sp.eval, id2label)
    with open(art / "eval.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    if embeds(opts):
        from cahp_edge.data import load_dataset
        from cahp_edge.data.unlabelled import ignored_labels

        raw = load_dataset(opts.data, "train", text_column=opts.text_column,
                           text_pair_column=opts.text_pair_column, label_column=None, labels=False)
        notes = [n for n in (ignored_labels(raw),) if n]
    info = {
        "rows": len(sp.eval),
        "calib": len(sp.calib),
        "select": len(sp.select),
        "sources": sp.sources,
        "labels": names,
        "select_on_finetuning_data": model_dir is not None and selects_on_finetuning_data(opts, model_dir),
        "task": opts.task,
        "notes": notes,
    }
    write_json(art / "splits.json", info)
    return info


def _train_config(opts, epochs: float, loop, recovering: bool = True):
    from cahp_edge.data.options import DataOptions
    from cahp_edge.train.loop import TrainConfig

    return TrainConfig.from_options(DataOptions.pick(opts), loop, epochs, recovering)


def _train_progress(progress: Progress | None, task: str):
    if progress is None:
        return None
    return lambda step, total, *_: progress(task, int(step), int(total))


# ---- target-independent stages ------------------------------------------------------------------
def check(art: Path, model_dir: Path, opts, id2label: dict) -> dict:
    """Dense accuracy vs the majority class and chance, loss vs ln(C), on the evaluation split."""
    from cahp_edge.model.load import load_model
    from cahp_edge.model.sanity import model_health

    lm = load_model(model_dir, trust_pickle=opts.trust_pickle, require_classifier=True, task=opts.task)
    sp = splits(opts, id2label)
    if tags(opts):  # entity F1 of the dense tagger, recorded (no majority class for spans)
        from cahp_edge.data.tagged import encode_tagged
        from cahp_edge.model.tagging import entity_scores, predict_tags

        l2i = {str(v): int(k) for k, v in lm.model.config.id2label.items()}
        pred = predict_tags(lm.model, encode_tagged(lm.tokenizer, sp.eval, l2i, opts.max_length,
                                                    opts.batch_size), lm.model.config.id2label)
        doc = {"weak": False, "entity_f1": entity_scores(sp.eval.tags, pred)["f1"],
               "eval": sp.sources["eval"]}
        art.mkdir()
        write_json(art / "check.json", doc)
        return doc
    if embeds(opts):  # no majority class to beat: the dense quality is recorded, never judged weak
        from cahp_edge.model.evaluate import sts_spearman

        doc = {"weak": False, "spearman": sts_spearman(lm.model, lm.tokenizer, sp.eval, opts.max_length,
                                                       opts.batch_size), "eval": sp.sources["eval"],
               "notes": list(lm.notes)}
        art.mkdir()
        write_json(art / "check.json", doc)
        return doc
    health = model_health(lm.model, lm.tokenizer, sp.eval, opts.max_length, opts.batch_size)
    art.mkdir()
    doc = {**health.to_dict(), "eval": sp.sources["eval"]}
    write_json(art / "check.json", doc)
    return doc


def finetune(
    art: Path, base: str, train: str, dev: str | None, opts, epochs: float, progress: Progress | None = None
) -> dict:
    """Demo: turn a base encoder into a task classifier (cahp_edge.train.finetune)."""
    from cahp_edge.train.finetune import finetune as run
    from cahp_edge.train.options import LoopOptions

    res = run(
        base,
        train,
        art,
        eval_data=dev,
        cfg=_train_config(opts, epochs, LoopOptions.pick(opts), recovering=False),
        progress=_train_progress(progress, "fine-tune"),
    )
    return {
        "accuracy": res.accuracy,
        "eval": res.eval_source,
        "train_rows": res.train_rows,
        "steps": res.train.steps,
        "epochs": res.train.epochs,
        "loss": res.train.loss,
    }


def cost(art: Path, model_dir: Path, target, opts) -> dict:
    """The target's latency cost per head and per FFN neuron, measured on this host (targets.costmodel)."""
    from cahp_edge.targets.costmodel import measure_cost

    tgt = bench_target(target, opts)
    runs = max(4, min(30, tgt.benchmark.runs))
    c = measure_cost(model_dir, tgt, runs=runs, rounds=min(4, runs))
    art.mkdir()
    write_json(art / COST_FILE, c.to_dict())
    return {"target": target.name, "per_head_ms": c.per_head, "per_neuron_ms": c.per_neuron,
            "fixed_ms": c.fixed, "dense_ms": c.measured[0]["p50_ms"], "source": c.source}


COST_FILE = "cost.json"


def prune(
    art: Path, model_dir: Path, opts, po, id2label: dict, progress: Progress | None = None,
    cost_dir: Path | None = None, multiple: int = 1, dense_labels: bool = False,
) -> dict:
    """Select heads with ``po`` (the build's PruneOptions, the same object its cache key was made of);
    ``cost_dir``: the cost stage's artifact (the first target's measured latency model), if any."""
    from cahp_edge.data import check_task
    from cahp_edge.fsutil import atomic_dir
    from cahp_edge.model.load import load_model
    from cahp_edge.plots import better_rival, guard_text, kept_drop
    from cahp_edge.prune.artifact import write_plan_dir
    from cahp_edge.prune.batches import from_dataset
    from cahp_edge.prune.salience import with_dense_targets
    from cahp_edge.prune.select import select_heads
    from cahp_edge.prune.sweep import SelectionData

    lm = load_model(model_dir, trust_pickle=opts.trust_pickle, require_classifier=True, task=opts.task)
    sp = splits(opts, id2label)
    if tags(opts):
        from cahp_edge.data.tagged import encode_tagged
        from cahp_edge.prune.batches import Batches

        l2i = {str(v): int(k) for k, v in lm.model.config.id2label.items()}

        def batches(ds):
            return Batches(encode_tagged(lm.tokenizer, ds, l2i, opts.max_length, opts.batch_size))
    else:
        if not embeds(opts):
            check_task(sp.calib, lm.model.config)

        def batches(ds):
            return from_dataset(lm.tokenizer, ds, opts.max_length, opts.batch_size)
    def scored(ds):  # rows without labels are scored against the dense model's own output
        return batches(ds) if ds.labelled else with_dense_targets(lm.model, batches(ds))

    sel = SelectionData(scored(sp.calib), scored(sp.select))
    sources = {k: v for k, v in sp.sources.items() if k != "eval"}
    tick = (lambda task, done, total: progress(f"prune: {task}", done, total)) if progress else None
    unit_cost = None
    if cost_dir is not None:
        from cahp_edge.prune.cost import UnitCost

        unit_cost = UnitCost(**json.loads((cost_dir / COST_FILE).read_text(encoding="utf-8")))
    plan = select_heads(lm.model, lm.adapter, sel, po, sources, progress=tick, cost=unit_cost,
                        multiple=multiple)
    plan.meta["model"] = {"source_hash": lm.source_hash}
    plan.meta["task"] = opts.task
    from cahp_edge.tasks import TASKS

    # what the evaluation split reports, for the plots (plots do not read the registry themselves)
    plan.meta["metric"] = TASKS.get(opts.task, TASKS["sequence-classification"]).metric
    # what the selection split's "accuracy" is for this task (labels, or agreement with the dense model)
    plan.meta["selection_measure"] = "mean cosine to the dense embedding" if embeds(opts) else \
        ("tag accuracy" if sp.select.labelled else "tag agreement") if tags(opts) else \
        "argmax agreement with the dense model" if dense_labels else "accuracy"
    dist = plan.meta.pop("_distance", None)
    with atomic_dir(art) as tmp:
        write_plan_dir(tmp, plan, dist)
    m = plan.meta
    knee = dict(m.get("knee") or {})
    return {
        "heads_before": plan.total_heads,
        "heads_after": plan.total_kept,
        "heads_per_layer": plan.heads_per_layer,
        "k_star": m.get("k_star"),
        "budget_source": m.get("budget_source"),
        "knee": knee.get("k"),
        "degree": knee.get("degree", po.degree),
        "method": m.get("method"),
        "selection_accuracy_dense": m.get("selection_accuracy_dense"),
        "selection_s": (m.get("timings") or {}).get("selection_s"),
        "drop": kept_drop({**m, "total_kept": plan.total_kept}),
        "guard": guard_text(knee),
        "better_rival": better_rival(m),
        **({"neurons_before": sum(plan.num_neurons), "neurons_after": sum(plan.neurons_per_layer),
            "neurons_per_layer": plan.neurons_per_layer, "speedup_ideal": m.get("speedup_ideal"),
            "cost_source": (m.get("cost_model") or {}).get("source"),
            "cost_unit": (m.get("cost_model") or {}).get("unit")} if plan.prunes_neurons else {}),
    }


def reshape(art: Path, model_dir: Path, plan_path: Path, opts) -> dict:
    from cahp_edge.model.accounting import model_cost
    from cahp_edge.model.load import load_model, save_pruned
    from cahp_edge.model.reshape import reshape as cut
    from cahp_edge.plan import HeadPlan

    lm = load_model(model_dir, trust_pickle=opts.trust_pickle, task=opts.task)
    plan = HeadPlan.load(plan_path)
    pruned = cut(lm.model, plan, lm.adapter)
    save_pruned(pruned, plan, art, lm.tokenizer, lm.source_hash)
    before, after = model_cost(lm.model, 128, lm.adapter), model_cost(pruned, 128, lm.adapter)
    return {
        "params": [before.total_params, after.total_params],
        "macs_seq128": [before.total_macs, after.total_macs],
        "ideal_speedup_seq128": round(before.total_macs / max(1, after.total_macs), 4),
    }


def recover(
    art: Path, pruned_dir: Path, dense_dir: Path, opts, ro, id2label: dict, progress: Progress | None = None
) -> dict:
    """Recovery of the reshaped model on the training data (cahp_edge.train.recover): the least-squares
    re-fit to the dense model, a fine-tune, or both (``ro.recover_method``)."""
    from cahp_edge.train.recover import recover_dir

    train, _, _ = load_data(opts, id2label)
    if tags(opts):  # the re-fit needs activations on text only: the sentences, words joined
        from cahp_edge.build.tagged_data import as_text

        train = as_text(train)
    res = recover_dir(
        pruned_dir,
        train,
        art,
        teacher=dense_dir if ro.distill else None,
        cfg=_train_config(opts, ro.recover_epochs, ro),
        progress=_train_progress(progress, "recover"),
        rec=ro,
        dense=dense_dir,
    )
    return {
        "method": ro.recover_method,
        "steps": res.train.steps,
        "epochs": res.train.epochs,
        "loss": res.train.loss,
        "teacher": res.teacher,
        "device": res.train.device,
        "reconstruction": None if res.reconstruction is None else {
            k: res.reconstruction[k] for k in ("positions", "seconds", "damp", "error_ratio")},
    }


def export(art: Path, model_dir: Path, opset: int, opts) -> dict:
    from cahp_edge.deploy.export import export_onnx
    from cahp_edge.model.load import load_model

    lm = load_model(model_dir, trust_pickle=opts.trust_pickle)
    om = export_onnx(lm, art, opset=opset)
    return {
        "opset": opset,
        "heads_per_layer": om.heads_per_layer,
        "max_abs_diff": om.parity.max_abs_diff,
        "argmax_agree": om.parity.argmax_agree,
    }


def optimize(art: Path, onnx_dir: Path, opts) -> dict:
    from cahp_edge.deploy.optimize import optimize_onnx

    om = optimize_onnx(onnx_dir, art)
    return {
        "fused": om.fused,
        "fused_heads": om.fused_heads,
        "fused_attention": sum(1 for h in om.fused_heads if h),
        "warnings": om.warnings,
        "max_abs_diff": om.parity.max_abs_diff if om.parity else None,
    }


# ---- per-target stages --------------------------------------------------------------------------
def quantize(
    art: Path, onnx_dir: Path, target, opts, qo, id2label: dict, progress: Progress | None = None
) -> dict:
    """The target's quantization recipe, accuracy-gated on the selection split (cahp_edge.deploy.quantize)."""
    from cahp_edge.deploy.quantize import quantize as run

    sp = splits(opts, id2label)
    q = _with_progress(
        run,
        progress,
        f"quantize {target.name}",
        model=onnx_dir,
        target=target,
        out=art,
        calib=_as_text(opts, sp.calib),
        select=_as_text(opts, sp.select),
        calib_size=qo.quant_calib_size,
    )
    size = (q.onnx_path.stat().st_size / 2**20) if q.onnx_path.is_file() else None
    return {
        "mode": q.recipe.get("mode"),
        "format": q.recipe.get("format"),
        "size_mb": size,
        "quantized_matmuls": q.quantized_matmuls,
        "agreement": q.agreement,
        "fp32_nodes": q.fp32_nodes,
        "accuracy": q.accuracy,
        "warnings": q.warnings,
        "ort": q.ort_path is not None,
    }


def _as_text(opts, ds):
    """Tagged sentences as plain text for the int8 stage (its gate compares tags with the fp32 graph)."""
    if not tags(opts):
        return ds
    from cahp_edge.build.tagged_data import as_text

    return as_text(ds)


def bench_target(target, opts):
    """The target with the build's benchmark overrides applied (quick runs, tests)."""
    over = opts.benchmark.model_dump(exclude_none=True)
    if not over:
        return target
    return target.model_copy(update={"benchmark": target.benchmark.model_copy(update=over)})


def validate(
    art: Path, models: dict[str, Path], target, eval_file: Path, opts, progress: Progress | None = None
) -> dict:
    """Measure dense fp32, pruned fp32 and the shipped model with the target's settings (validate.py)."""
    from cahp_edge.targets.validate import validate as run

    tgt = bench_target(target, opts)
    results: dict[str, Any] = {}
    task = f"validate {target.name}"
    for i, (name, d) in enumerate(models.items()):
        if progress:
            progress(task, i, len(models))
        base = (results.get("dense") or {}).get("accuracy")
        results[name] = run(d, tgt, data=eval_file, baseline_accuracy=base).to_dict()
    if progress:
        progress(task, len(models), len(models))
    art.mkdir()
    write_json(art / "validate.json", results)
    shipped = results["shipped"]
    lat = (shipped.get("profile") or {}).get("latency") or {}
    return {
        "models": list(results),
        "metric": ((shipped.get("profile") or {}).get("accuracy") or {}).get("metric", "accuracy"),
        "accuracy": {k: v.get("accuracy") for k, v in results.items()},
        "p90_ms": lat.get("p90_ms"),
        "status": shipped.get("status"),
    }


def _summary(res: Any) -> dict:
    if res is None:
        return {}
    if isinstance(res, dict):
        return {k: v for k, v in res.items() if _jsonable(v)}
    for attr in ("summary", "to_dict"):
        f = getattr(res, attr, None)
        if callable(f):
            return dict(f())
    return {}


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False
