"""`cahp-edge build`: compose the stages, once per model and once per target, through the resumable cache.

    cahp-edge build --model ckpt/ --data train.tsv --eval dev.tsv --target rpi5-arm64 --out dist/

    data ─ check ─ prune ─ reshape ─ recover ─ export ─ optimize ─┬─ quantize(t) ─ validate(t) ─ package(t)
    dense: export ─ optimize ─────────────────────────────────────┘  (t: every target; dense fp32 too)

``check`` stops the build when the dense model is no better than the majority class (model.sanity).

Only composition lives here: every stage is a function of another module, called through
:mod:`cahp_edge.build.stages`; each finished stage is an entry of :class:`cahp_edge.build.cache.BuildCache`,
so a re-run resumes after the last finished stage and a no-change re-run recomputes nothing.
Nothing here prints: the caller passes :class:`Events` and renders them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cahp_edge.build import stages as st
from cahp_edge.build.cache import BuildCache, build_lock
from cahp_edge.build.options import BuildOptions
from cahp_edge.data.options import DataOptions
from cahp_edge.deploy.options import QuantizeOptions
from cahp_edge.errors import ModelError, UsageError
from cahp_edge.fsutil import check_not_input
from cahp_edge.lineage import StageRecord
from cahp_edge.plan import PLAN_FILE
from cahp_edge.plots import drop_text
from cahp_edge.prune.options import PruneOptions
from cahp_edge.release.package import check_replaceable
from cahp_edge.targets.costmodel import COST_MODEL_VERSION, measurable_here
from cahp_edge.targets.options import ValidateOptions
from cahp_edge.train.options import RecoverOptions


class Events:
    """What a build reports while it runs. The default ignores everything (library use, tests)."""

    def stage(self, rec: StageRecord, line: str) -> None:  # one finished (or cached) stage
        pass

    def progress(self, task: str, done: int, total: int) -> None:  # inside a long stage
        pass


@dataclass
class BuildResult:
    out: Path
    stages: dict[str, StageRecord] = field(default_factory=dict)
    releases: dict[str, Any] = field(default_factory=dict)  # target -> package.Release
    verdicts: dict[str, Any] = field(default_factory=dict)  # target -> budgets verdict
    seconds: float = 0.0

    @property
    def recomputed(self) -> list[str]:
        return [n for n, r in self.stages.items() if not r.hit]

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "seconds": round(self.seconds, 2),
            "recomputed": self.recomputed,
            "stages": {
                n: {"key": r.key, "cached": r.hit, "seconds": round(r.seconds, 2), **r.summary}
                for n, r in self.stages.items()
            },
            "releases": {t: r.to_dict() for t, r in self.releases.items()},
            "budgets": self.verdicts,
        }


def resolve_targets(names: list[str]) -> list:
    from cahp_edge.targets.profile import list_targets, load_target

    if not names:
        raise UsageError(
            "no target given",
            "a build makes one release per target",
            f"pass --target NAME (known: {', '.join(list_targets())}) at least once",
        )
    seen, targets = set(), []
    for n in names:
        t = load_target(n)  # TargetError listing the known names when unknown
        if t.name not in seen:
            seen.add(t.name)
            targets.append(t)
    return targets


def _target_key(target) -> dict[str, Any]:
    d = target.summary()
    d.pop("source", None)  # where the profile file lives does not change the result
    return d


def _input_hash(spec: str | None) -> str | None:
    """Content hash of a local data file/folder; the name itself for hub datasets."""
    from cahp_edge.fsutil import sha256_file, sha256_tree

    if spec is None:
        return None
    p = Path(spec).expanduser()
    if p.is_file():
        return sha256_file(p)
    if p.is_dir():
        return sha256_tree(p)
    return f"hub:{spec}"


@dataclass
class Source:
    model_dir: Path
    checkpoint: str  # sha256 of config + weights
    tokenizer: str  # sha256 of the tokenizer files
    id2label: dict
    train: str | None
    eval: str | None
    select: str | None = None
    select_unlabelled: bool = False  # --select rows have no labels: the dense model labels them
    train_unlabelled: bool = False  # --data rows have no labels (plain text): the dense model labels them


def with_task(opts: BuildOptions) -> BuildOptions:
    """``opts`` with ``task`` resolved from the checkpoint when "auto" (cahp_edge.tasks.detect_task), so
    every stage and its cache key see the task that runs; a bare encoder is refused with the fix."""
    from cahp_edge.model.load import read_config_dict, resolve_model_dir, resolve_task

    d = resolve_model_dir(opts.model)
    task = resolve_task(d, read_config_dict(d), None if opts.task == "auto" else opts.task, require=True)
    return opts if task.name == opts.task else opts.model_copy(update={"task": task.name})


def inspect_source(opts: BuildOptions) -> Source:
    from cahp_edge.fsutil import sha256_tree
    from cahp_edge.model.load import checkpoint_hash, read_config_dict, resolve_model_dir

    d = resolve_model_dir(opts.model)
    cfg = read_config_dict(d)
    tok = sha256_tree(d, ("tokenizer*", "vocab*", "special_tokens_map.json", "merges.txt", "*.model"))
    id2label = {} if st.embeds(opts) else cfg.get("id2label") or {}
    label_free = st.embeds(opts) or st.tags(opts)  # these score agreement inside prune, no labelling stage
    # fail now (DataError) when labels disagree, before any stage
    train, _, sel = st.load_data(opts, id2label)
    return Source(d, checkpoint_hash(d), tok, id2label, _input_hash(opts.data), _input_hash(opts.eval),
                  _input_hash(opts.select),
                  select_unlabelled=sel is not None and not sel.labelled and not label_free,
                  train_unlabelled=not train.labelled and not label_free)


def build(opts: BuildOptions, force: bool = False, events: Events | None = None) -> BuildResult:
    """Run every stage for every target; resume from the cache; write dist/<target>/ + .tar.gz."""
    t0 = time.perf_counter()
    targets = resolve_targets(opts.targets)
    out = Path(opts.out)
    # never write where an input lives (model, data files) or over a root / home folder
    check_not_input(out, [opts.model, opts.data, opts.eval, opts.select])
    for t in targets:  # a user's folder or archive where a release goes: refused before any stage runs
        check_replaceable(out, t.name)
    opts = with_task(opts)
    src = inspect_source(opts)  # bad model / data / labels fail here, before OUT is touched
    with build_workspace(out) as cache:
        res = build_locked(opts, targets, cache, force, events or Events(), src=src)
        cache.prune_unused()
    res.seconds = time.perf_counter() - t0
    return res


@contextlib.contextmanager
def build_workspace(out: Path) -> Iterator[BuildCache]:
    """Lock OUT and yield its cache; temporaries are swept on entry and again on any failure.

    The stages clean their own temporaries, but a signal can land between a ``mkdtemp`` and the
    ``try`` that owns it; sweeping under the lock on the way out closes that window.
    """
    with build_lock(out):
        cache = BuildCache(out)
        cache.claim()  # a .cahp-cache cahp-edge did not make is refused, never emptied
        cache.clean_partials()
        try:
            yield cache
        except BaseException:
            cache.clean_partials()
            raise


def build_locked(
    opts: BuildOptions,
    targets: list,
    cache: BuildCache,
    force: bool,
    ev: Events,
    res: BuildResult | None = None,
    src: Source | None = None,
) -> BuildResult:
    """The stages, for a caller that holds OUT's lock (build, demo)."""
    from cahp_edge.release.assemble import ReleaseInputs, make_release

    out = Path(opts.out)
    res = res or BuildResult(out)
    if src is None:  # build() resolved the task before inspecting the source; other callers here
        opts = with_task(opts)
        src = inspect_source(opts)

    def run(name: str, inputs: dict, fn, line) -> StageRecord:
        rec = cache.run(name.split(":")[0], inputs, fn, force=force)
        res.stages[name] = rec
        ev.stage(rec, _line(name, rec, line))
        return rec

    base = {"checkpoint": src.checkpoint, "tokenizer": src.tokenizer}
    # each stage's options are taken out of the build's once; the stage and its cache key see the same object
    data_o, prune_o, recover_o = DataOptions.pick(opts), PruneOptions.pick(opts), RecoverOptions.pick(opts)
    quant_o, valid_o = QuantizeOptions.pick(opts), ValidateOptions.pick(opts)
    data_in = {"train": src.train, "eval": src.eval, "select": src.select, "labels": src.id2label,
               **data_o.cache_key(), "eval_limit": valid_o.eval_limit}
    user_opts = opts  # what the manifest records, whatever the stages below are handed
    # unlabelled rows (plain text) are labelled by the dense model first: selection, calibration and the
    # int8 gate then measure agreement with it, which is what pruning must preserve
    for which, unlabelled in (("select", src.select_unlabelled), ("data", src.train_unlabelled)):
        if unlabelled:
            lab = run(f"label-{which}", {**base, **data_in, "which": which},
                      lambda a, w=which, o=opts: st.label_rows(a, src.model_dir, o, src.id2label, w),
                      _label_select_line)
            opts = opts.model_copy(update={which: str(lab.path / f"{which}.jsonl")})
    data = run("data", data_in, lambda a: st.write_eval(a, opts, src.id2label, src.model_dir), _data_line)
    check = run("check", {**base, **data_in}, lambda a: st.check(a, src.model_dir, opts, src.id2label),
                _check_line)
    if check.summary.get("weak") and not opts.allow_weak_model:
        raise ModelError(
            f"the dense model is not worth pruning: {check.summary['reason']} on {check.summary['eval']}",
            "pruning preserves what the model learned, and this one has learned next to nothing",
            "fine-tune longer or with another learning rate (`cahp-edge finetune --epochs 3 --lr 3e-5`), "
            "or pass --allow-weak-model to build anyway",
        )
    cost = None
    if prune_o.units == "heads+neurons" and prune_o.cost_model == "auto" and targets \
            and measurable_here(targets[0]):
        # one plan serves every target: its latency model is the first target's (docs/cahp.md)
        first = st.bench_target(targets[0], opts)
        cost = run("cost", {**base, "target": first.summary(), "code": COST_MODEL_VERSION},
                   lambda a: st.cost(a, src.model_dir, targets[0], opts), _cost_line)
    multiple = targets[0].neuron_multiple if targets else 1  # the first target's, like its cost model
    prune = run(
        "prune",
        {**base, **data_in, "prune": prune_o.cache_key(), "cost": cost.tree if cost else None,
         "neuron_multiple": multiple},
        lambda a: st.prune(a, src.model_dir, opts, prune_o, src.id2label, ev.progress,
                           cost.path if cost else None, multiple,
                           # selection rows labelled by the dense model: their "accuracy" is agreement
                           dense_labels=src.select_unlabelled or (src.train_unlabelled and not opts.select)),
        _prune_line,
    )
    shape = run(
        "reshape",
        {**base, "plan": prune.tree},
        lambda a: st.reshape(a, src.model_dir, prune.path / PLAN_FILE, opts),
        _reshape_line,
    )
    model = shape
    # "auto" -> what runs, in the key
    recover_o = recover_o.resolved(prune_o.units == "heads+neurons", label_free=st.embeds(opts))
    if recover_o.recover_epochs > 0 or recover_o.reconstructs:
        teacher = src.checkpoint if recover_o.distill or recover_o.reconstructs else None
        model = run(
            "recover",
            {"model": shape.tree, "teacher": teacher, **data_in, "recover": recover_o.cache_key()},
            lambda a: st.recover(a, shape.path, src.model_dir, opts, recover_o, src.id2label, ev.progress),
            _recover_line,
        )

    def onnx_graphs(suffix: str, inputs: dict, model_dir: Path, opset: int) -> tuple[StageRecord, ...]:
        """(plain export, fused graph) of one model at one opset."""
        exp = run(
            f"export{suffix}:{opset}",
            inputs,
            lambda a: st.export(a, model_dir, opset, opts),
            _export_line,
        )
        fused = run(
            f"optimize{suffix}:{opset}",
            {"onnx": exp.tree},
            lambda a: st.optimize(a, exp.path, opts),
            _optimize_line,
        )
        return exp, fused

    pruned: dict[int, tuple[StageRecord, StageRecord]] = {}
    dense: dict[int, tuple[StageRecord, StageRecord]] = {}
    for opset in sorted({t.opset for t in targets}):
        pruned[opset] = onnx_graphs("", {"model": model.tree, "opset": opset}, model.path, opset)
        if valid_o.compare_dense:
            dense[opset] = onnx_graphs("-dense", {**base, "opset": opset}, src.model_dir, opset)
    for t in targets:
        tk = _target_key(t)
        # the profile decides whether its graph is the fused one (data, not a branch on the target)
        pick = 1 if t.optimize else 0
        base_onnx = pruned[t.opset][pick]
        q = run(
            f"quantize:{t.name}",
            {"onnx": base_onnx.tree, "target": tk, **data_in, "quantize": quant_o.cache_key()},
            lambda a, t=t, b=base_onnx: st.quantize(a, b.path, t, opts, quant_o, src.id2label, ev.progress),
            _quantize_line,
        )
        models = {"shipped": q, "pruned": base_onnx}
        if t.opset in dense:
            models = {"dense": dense[t.opset][pick], **models}
        val = run(
            f"validate:{t.name}",
            {
                "models": {k: m.tree for k, m in models.items()},
                "target": tk,
                "eval": data.tree,
                "bench": valid_o.benchmark.model_dump(),
            },
            lambda a, t=t, ms=models: st.validate(
                a, {k: m.path for k, m in ms.items()}, t, data.path / "eval.jsonl", opts, ev.progress
            ),
            _validate_line,
        )

        inputs = ReleaseInputs(
            plan=prune,
            shaped=shape,
            export=pruned[t.opset][0],
            data=data,
            quantized=q,
            validated=val,
            lineage=target_stages(res.stages, t.name),
            source={
                "model": opts.model,
                "name": opts.name or opts.model,
                "checkpoint_sha256": src.checkpoint,
                "tokenizer_sha256": src.tokenizer,
            },
            data_files={
                "train": user_opts.data,
                "train_sha256": src.train,
                **({"train_labels": "dense model predictions"} if src.train_unlabelled else {}),
                "eval": opts.eval,
                "eval_sha256": src.eval,
                **({"select": user_opts.select, "select_sha256": src.select,
                    "select_labels": "dense model predictions" if src.select_unlabelled else "given"}
                   if user_opts.select else {}),
            },
            options=user_opts.model_dump(mode="json", exclude={"out", "sign_key"}),
            pytorch=model if opts.keep_pytorch else None,
        )
        rel, verdict, rec = make_release(out, t, inputs, force, scratch=cache.scratch,
                                         sign_key=Path(opts.sign_key) if opts.sign_key else None)
        res.releases[t.name], res.verdicts[t.name] = rel, verdict
        res.stages[f"package:{t.name}"] = rec
        ev.stage(rec, _line(f"package:{t.name}", rec, _package_line))
    return res


def target_stages(stages: dict[str, StageRecord], target: str) -> dict[str, StageRecord]:
    """The stages one target's release descends from (shared ones + its own), in build order.

    Stage names are this module's own: ``name`` for shared stages, ``name:<opset>`` per opset,
    ``name:<target>`` per target.
    """

    def mine(name: str) -> bool:
        tag = name.partition(":")[2]
        return not tag or tag.isdigit() or tag == target

    return {n: r for n, r in stages.items() if mine(n) and not n.startswith("package")}


# ---- one-line summaries (the CLI prints them on stderr) -----------------------------------------
def _line(name: str, rec: StageRecord, fmt) -> str:
    try:
        body = fmt(rec.summary)
    except (KeyError, TypeError, ValueError, IndexError):
        body = ""
    label = name.replace(":", " ")
    when = "cached" if rec.hit else f"{rec.seconds:.0f} s"
    return f"{label}: {body}{', ' if body else ''}{when}"


def _label_select_line(s: dict) -> str:
    counts = ", ".join(f"{k} {v}" for k, v in s["labels"].items())
    return f"{s['rows']} unlabelled --{s.get('which', 'select')} rows labelled by the dense model ({counts})"


def _data_line(s: dict) -> str:
    line = f"{s['calib']} calibration / {s['select']} selection rows, {s['rows']} evaluation rows"
    if s.get("select_on_finetuning_data"):
        line += (" (warning: selection rows come from the data the model was fine-tuned on, so the knee "
                 "sees optimistic accuracy; pass --select with held-out rows)")
    for note in s.get("notes") or []:
        line += f"; note: {note}"
    return line


def _check_line(s: dict) -> str:
    if "entity_f1" in s:  # token classifiers: entity F1 of the dense model (seqeval)
        return f"dense entity F1 {100 * s['entity_f1']:.2f} on {s['eval']}"
    if "spearman" in s:  # embedding models: the dense quality, recorded (no majority class to beat)
        notes = "".join(f"; note: {n}" for n in s.get("notes") or [])
        return f"dense STS Spearman {100 * s['spearman']:.2f} on {s['eval']}{notes}"
    verdict = "WEAK" if s["weak"] else "ok"
    return (f"dense accuracy {100 * s['accuracy']:.1f}% (majority class {100 * s['majority']:.1f}%, "
            f"chance {100 * s['chance']:.1f}%), loss {s['loss']:.3f} (ln {1 / s['chance']:.0f} = "
            f"{s['ln_labels']:.3f}): {verdict}")


def _cost_line(s: dict) -> str:
    return (f"{s['target']}: {s['fixed_ms']:.2f} ms + {s['per_head_ms']:.3f} ms per head + "
            f"{1000 * s['per_neuron_ms']:.2f} us per FFN neuron (dense {s['dense_ms']:.2f} ms measured)")


def _prune_line(s: dict) -> str:
    joint = "neurons_after" in s  # heads + FFN neurons: the knee's axis is kept cost in permille of dense
    if s.get("budget_source") != "knee":
        how = "fixed budget"
    elif joint:
        how = f"knee at {s['k_star'] / 10:g}% of the dense cost (degree {s['degree']})"
    elif s.get("knee") is not None and s["knee"] != s["k_star"]:  # the card and report say the same
        how = f"knee of the degree-{s['degree']} fit at k={s['knee']}, kept {s['k_star']} (next grid point)"
    else:
        how = f"knee at k={s['k_star']} (degree {s['degree']})"
    if joint:
        kind = "predicted" if s.get("cost_unit") == "ms" else "ideal"
        how = (f"{s['neurons_before']} -> {s['neurons_after']} FFN neurons, {kind} speedup "
               f"{s['speedup_ideal']:.2f}x ({s['cost_source']}), {how}")
    cost = drop_text(s.get("drop"))
    if s.get("guard"):
        how += f" ({s['guard']})"
    rival = f" (note: {s['better_rival']})" if s.get("better_rival") else ""
    return f"{s['heads_before']} -> {s['heads_after']} heads, {how}" + (f"; {cost}" if cost else "") + rival


def _reshape_line(s: dict) -> str:
    p0, p1 = s["params"]
    return f"params {p0:,} -> {p1:,}, ideal speedup {s['ideal_speedup_seq128']:.2f}x at seq 128"


def _recover_line(s: dict) -> str:
    loss = s.get("loss", float("nan"))
    parts = []
    if s.get("reconstruction"):
        r = s["reconstruction"]
        parts.append(f"least-squares re-fit on {r['positions']} tokens in {r['seconds']:.1f} s "
                     f"(layer error x{r['error_ratio']:.2f})")
    if s.get("steps"):
        parts.append(f"{s.get('epochs', '?')} epoch(s), {s.get('steps', '?')} steps, loss {loss:.3f}")
    return " then ".join(parts) or "nothing to do"


def _export_line(s: dict) -> str:
    diff = s.get("max_abs_diff", s.get("parity_max_abs_diff"))
    return f"parity max |diff| {diff:.1e}" if isinstance(diff, float) else ""


def _optimize_line(s: dict) -> str:
    n = s.get("fused_attention", s.get("fused"))
    return f"{n} fused attention node(s)" if n is not None else ""


def _quantize_line(s: dict) -> str:
    parts = [f"{s.get('mode')} {s.get('format')}"]
    if s.get("size_mb") is not None:
        parts.append(f"{s['size_mb']:.1f} MB")
    if s.get("quantized_matmuls") is not None:
        parts.append(f"{s['quantized_matmuls']} int8 MatMuls")
    if s.get("agreement") is not None:
        measure = str((s.get("accuracy") or {}).get("measure"))
        what = "mean cosine to fp32" if "cosine" in measure else "tag agreement" if "tag" in measure else \
            "argmax agreement"
        parts.append(f"{what} {s['agreement']:.3f}")
    if s.get("fp32_nodes"):
        parts.append(f"{len(s['fp32_nodes'])} node(s) kept fp32")
    return ", ".join(parts)


def _validate_line(s: dict) -> str:
    acc = s.get("accuracy") or {}
    metric = s.get("metric") or "accuracy"
    parts = [f"{metric} {k} {v:.3f}" for k, v in acc.items() if v is not None]
    if s.get("p90_ms") is not None:
        parts.append(f"p90 {s['p90_ms']:.2f} ms")
    return ", ".join(parts)


def _package_line(s: dict) -> str:
    return f"{s['dir']} ({s['files']} files) + {Path(s['tarball']).name}, budgets {s['budgets']}"
