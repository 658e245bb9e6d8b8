"""`cahp-edge optimize ONNX_DIR --out DIR`: ONNX Runtime's transformer fusions, correct per layer.

ORT's optimizer reads a layer's head count from the Reshape that splits Q/K/V into heads, but only
when that shape holds a positive constant; transformers writes ``-1`` there (``view(B, T, -1, d)``),
so with ``num_heads=0`` nothing fuses and with a global ``num_heads`` every layer gets the same
(wrong, for a pruned model) count. We write each Reshape's real head count -- read from the width
of the Q/K/V weight feeding it -- into its shape before optimizing, then check the result: one
fused Attention per layer that kept heads, each with that layer's count, and parity with PyTorch.
A graph that fails a check is not used: the unfused graph is kept and the reason is returned.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cahp_edge.deploy.export import (
    META_FILE,
    ONNX_FILE,
    PARITY_FILE,
    TWO_GB,
    ParityReport,
    _first_line,
    compare,
    load_reference,
    ort_logits,
    read_meta,
    session,
)
from cahp_edge.errors import ExportError
from cahp_edge.fsutil import atomic_dir

SIDE_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
              "vocab.txt", "vocab.json", "merges.txt", "sentencepiece.bpe.model", "spiece.model",
              "added_tokens.json", "chat_template.jinja", PARITY_FILE, "cahp_pooling.json")


@dataclass
class OptimizedModel:
    path: Path
    fused: bool
    fused_heads: list[int]  # per layer: the fused Attention's num_heads (0 = layer has no heads)
    warnings: list[str] = field(default_factory=list)
    parity: ParityReport | None = None
    op_counts: dict[str, int] = field(default_factory=dict)

    @property
    def onnx_path(self) -> Path:
        return self.path / ONNX_FILE

    def to_dict(self) -> dict:
        return {"path": str(self.path), "fused": self.fused, "fused_heads": self.fused_heads,
                "warnings": self.warnings, "max_abs_diff": self.parity.max_abs_diff if self.parity else None,
                "op_counts": self.op_counts}


def load_onnx(path: Path):
    """onnx.load with one ExportError for a missing, truncated or non-ONNX file."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"ONNX file not found: {path}", "", "run `cahp-edge export` first")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as e:
        raise ExportError(f"ONNX file {path} fails to load", _first_line(e),
                          "the file is truncated or corrupt; re-run `cahp-edge export`") from e
    return model


def save_onnx(model, path: Path) -> None:
    """One file below protobuf's 2 GB limit, weights in ``<name>.data`` beside it above."""
    import onnx

    big = sum(len(t.raw_data) for t in model.graph.initializer) > TWO_GB
    onnx.save(model, str(path), save_as_external_data=big, all_tensors_to_one_file=True,
              location=Path(path).name + ".data")


def constants(graph) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    c = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for nd in graph.node:
        if nd.op_type == "Constant":
            for a in nd.attribute:
                if a.name == "value":
                    c[nd.output[0]] = numpy_helper.to_array(a.t)
    return c


def write_head_counts(model) -> list[tuple[str, int]]:
    """Replace the -1 in every head-splitting Reshape with that projection's head count.

    Pattern (legacy exporter, eager attention)::

        MatMul(x, W[D, k*d]) -> Add(bias) -> Reshape(shape=Concat(B, T, -1, d)) -> Transpose
    """
    from onnx import numpy_helper

    g = model.graph
    c = constants(g)
    producer = {o: nd for nd in g.node for o in nd.output}
    patched = []
    for nd in g.node:
        if nd.op_type != "Reshape":
            continue
        add, cat = producer.get(nd.input[0]), producer.get(nd.input[1])
        if add is None or cat is None or add.op_type != "Add" or cat.op_type != "Concat":
            continue
        if len(cat.input) != 4:
            continue
        mm = next((producer[i] for i in add.input if i in producer and producer[i].op_type == "MatMul"), None)
        neg, hs = c.get(cat.input[2]), c.get(cat.input[3])
        if mm is None or mm.input[1] not in c or neg is None or hs is None or neg.size != 1 or hs.size != 1:
            continue
        if int(neg.reshape(-1)[0]) != -1:
            continue
        head_size, width = int(hs.reshape(-1)[0]), int(c[mm.input[1]].shape[-1])
        if head_size <= 0 or width % head_size:
            continue
        k = width // head_size
        name = f"{nd.name or nd.output[0]}/cahp_num_heads"
        g.initializer.append(numpy_helper.from_array(np.array([k], dtype=np.int64), name))
        cat.input[2] = name  # a fresh constant: the -1 node may be shared with other Reshapes
        patched.append((nd.name, k))
    return patched


def add_ms_opset(model) -> None:
    """Declare the com.microsoft domain used by fused ops (ORT's optimizer only adds it when saving)."""
    if any(n.domain == "com.microsoft" for n in model.graph.node) and not any(
            o.domain == "com.microsoft" for o in model.opset_import):
        from onnx import helper

        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))


def fused_attention_heads(model, head_size: int) -> list[tuple[str, int, int]]:
    """(name, num_heads attribute, heads implied by the packed QKV weight) per Attention, in graph order."""
    c = {i.name: i for i in model.graph.initializer}
    out = []
    for nd in model.graph.node:
        if nd.op_type not in ("Attention", "MultiHeadAttention"):
            continue
        heads = next((a.i for a in nd.attribute if a.name == "num_heads"), -1)
        w = c.get(nd.input[1]) if len(nd.input) > 1 else None
        implied = -1
        if w is not None and len(w.dims) == 2 and w.dims[1] % (3 * head_size) == 0:
            implied = w.dims[1] // (3 * head_size)  # packed Q|K|V weight: (D, 3 * k * d)
        out.append((nd.name, int(heads), int(implied)))
    return out


def check_fusion(fused: list[tuple[str, int, int]], heads_per_layer: list[int]) -> list[str]:
    """Problems with the fused graph vs the plan (empty list = fusion is right)."""
    want = [h for h in heads_per_layer if h > 0]
    got = [h for _, h, _ in fused]
    problems = []
    if len(got) != len(want):
        problems.append(f"{len(got)} fused attention nodes for {len(want)} layers with heads")
    elif got != want:
        problems.append(f"fused num_heads {got} differ from the plan's {want}")
    bad = [n for n, h, implied in fused if implied != h]
    if bad:
        problems.append(f"packed QKV weights of {bad} do not split into num_heads")
    return problems


GELU_FUSED = ("BiasGelu", "FastGelu")  # ORT's fused bias + GELU of the FFN up projection


def fused_ffn_widths(model) -> list[int]:
    """FFN width of every fused bias+GELU node, in graph order (the length of its bias initializer)."""
    c = {i.name: i for i in model.graph.initializer}
    out = []
    for nd in model.graph.node:
        if nd.op_type in GELU_FUSED and len(nd.input) > 1 and nd.input[1] in c:
            out.append(int(c[nd.input[1]].dims[0]) if c[nd.input[1]].dims else 1)
    return out


def check_ffn_fusion(source, fused_widths: list[int], neurons_per_layer: list[int] | None) -> list[str]:
    """Problems with the FFN fusions: each layer's GELU fused at that layer's own width (uneven widths
    and zero-neuron layers included). Only checked when the source graph has a GELU to fuse."""
    has_gelu = any(nd.op_type in ("Erf", "Gelu") for nd in source.graph.node)
    if not has_gelu or neurons_per_layer is None:
        return []
    if fused_widths != list(neurons_per_layer):
        return [f"bias+GELU fused at FFN widths {fused_widths}, the model has {list(neurons_per_layer)}"]
    return []


@contextlib.contextmanager
def _quiet_ort_logs():
    # ORT's fusion modules log under bare names ("fusion_attention"); its chatter is expected here
    # (it tries each pattern at every LayerNorm) and the checks below decide what counts
    old = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(old)


def optimize_onnx(src, out: Path, *, overwrite: bool = False) -> OptimizedModel:
    """Fuse attention / LayerNorm / GELU per layer; keep the unfused graph (with a warning) if unsafe."""
    from onnxruntime.transformers import optimizer

    src_dir = Path(getattr(src, "path", src))
    meta = read_meta(src_dir)
    if meta.get("stage") != "export":
        raise ExportError(f"{src_dir} holds a '{meta.get('stage')}' model",
                          "only an exported fp32 model is optimized",
                          "pass the folder written by `cahp-edge export`")
    heads = list(meta["heads_per_layer"])
    model = load_onnx(src_dir / ONNX_FILE)
    batches, ref = load_reference(src_dir)
    atol = float(meta.get("parity", {}).get("atol", 1e-4))
    warnings: list[str] = []

    patched = write_head_counts(model)
    with tempfile.TemporaryDirectory(prefix="cahp-opt-") as td:
        fixed = Path(td) / "fixed.onnx"
        save_onnx(model, fixed)
        try:
            with _quiet_ort_logs():
                opt = optimizer.optimize_model(str(fixed), model_type=meta.get("ort_model_type", "bert"),
                                               num_heads=0, hidden_size=0, opt_level=0, use_gpu=False)
            candidate = opt.model
            add_ms_opset(candidate)
        except Exception as e:  # ORT fusion bugs must not cost the user their export
            candidate = None
            warnings.append(f"ORT optimizer failed ({_first_line(e, 120)}); kept the unfused graph")
        head_size = int(meta["head_size"])
        fused_nodes = fused_attention_heads(candidate, head_size) if candidate is not None else []
        if candidate is not None:
            problems = check_fusion(fused_nodes, heads)
            if len(patched) != 3 * sum(1 for h in heads if h > 0):
                problems.append(f"found {len(patched)} head-splitting Reshapes, "
                                "expected 3 per layer with heads")
            parity = None
            if not problems:
                opt_path = Path(td) / "opt.onnx"
                save_onnx(candidate, opt_path)
                parity = compare(ref, ort_logits(session(opt_path), batches), atol, "optimize",
                                 meta.get("task", "sequence-classification"))
                if not parity.ok:
                    problems.append(f"fused graph fails parity ({len(parity.mismatches)} mismatches, "
                                    f"max |diff| {parity.max_abs_diff:.2e})")
            if problems:
                warnings.append("attention fusion rejected: " + "; ".join(problems)
                                + "; kept the unfused graph")
                candidate = None
        fused = candidate is not None
        ffn_widths = fused_ffn_widths(candidate) if fused else []
        if fused:  # a missing GELU fusion costs speed, not correctness (parity passed): warn, keep
            warnings += [f"FFN fusion incomplete: {p}" for p in
                         check_ffn_fusion(model, ffn_widths, meta.get("neurons_per_layer"))]
        if not fused:
            candidate = load_onnx(src_dir / ONNX_FILE)
            parity = compare(ref, ort_logits(session(src_dir / ONNX_FILE), batches), atol, "optimize",
                                 meta.get("task", "sequence-classification"))
        per_layer = []
        it = iter(h for _, h, _ in fused_nodes)
        for h in heads:
            per_layer.append(next(it) if (fused and h > 0) else 0)
        ops = dict(Counter(nd.op_type for nd in candidate.graph.node))
        with atomic_dir(Path(out), overwrite=overwrite) as tmp:
            save_onnx(candidate, tmp / ONNX_FILE)
            copy_side_files(src_dir, tmp)
            new_meta = dict(meta) | {"stage": "optimize", "fused": fused, "fused_heads": per_layer,
                                     "fused_ffn_widths": ffn_widths, "warnings": warnings,
                                     "parity": asdict(parity), "op_counts": ops}
            (tmp / META_FILE).write_text(json.dumps(new_meta, indent=2) + "\n")
    return OptimizedModel(Path(out), fused, per_layer, warnings, parity, ops)


def copy_side_files(src: Path, dst: Path) -> None:
    from cahp_edge.tasks import ST_FILES  # embedding folders: sentence-transformers' module files

    for name in (*SIDE_FILES, *ST_FILES):
        if (src / name).is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / name, dst / name)


optimize = optimize_onnx  # stage name used by the pipeline
