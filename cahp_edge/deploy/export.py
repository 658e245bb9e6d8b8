"""`cahp-edge export --model DIR --out DIR`: torch -> ONNX (fp32), verified against PyTorch.

The legacy TorchScript exporter is used on purpose (``dynamo=False``): graphs from the dynamo
exporter, or from SDPA attention, never match ONNX Runtime's attention-fusion patterns, so the
optimizer (:mod:`cahp_edge.deploy.optimize`) could not fuse them. Models are loaded with eager attention.

The output folder holds ``model.onnx`` (one file; external data only beyond protobuf's 2 GB),
``config.json`` in the source model_type with the label maps, the tokenizer files, and
``cahp_onnx.json`` (opset, inputs, heads per layer, parity report) that later stages read.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cahp_edge.errors import ExportError
from cahp_edge.fsutil import atomic_dir
from cahp_edge.runtime.similarity import pair_cosines  # the runner's own definition (numpy only)

ONNX_FILE = "model.onnx"
META_FILE = "cahp_onnx.json"
PARITY_FILE = "cahp_parity.npz"  # parity inputs + torch logits, so later stages re-check without torch
MIN_OPSET = 14  # LayerNormalization/Trilu-era graphs; per-channel QDQ needs >= 13
TWO_GB = 2 * 1024**3

# Varied lengths and punctuation: parity must hold beyond the example input the exporter traced.
DEFAULT_SENTENCES = (
    "A gripping, beautifully acted film.",
    "It's a dull, overlong mess that never finds its footing, and the jokes fall flat every single time.",
    "Not bad.",
    "The director's third feature is neither as sharp as his debut nor as bloated as the sequel, "
    "but it has moments of real grace.",
    "Awful!",
    "I laughed, I cried, I checked my watch twice.",
    "An uneven but often charming comedy about grief.",
    "What a waste of a great cast.",
)


@dataclass
class ParityReport:
    atol: float
    max_abs_diff: float
    n_examples: int
    argmax_agree: float  # fraction of examples whose argmax (every token's, for taggers) matches PyTorch
    mismatches: list[str] = field(default_factory=list)
    min_cosine: float | None = None  # embeddings: the lowest cosine between ONNX and PyTorch rows

    @property
    def ok(self) -> bool:
        return not self.mismatches


@dataclass
class OnnxModel:
    path: Path  # folder
    opset: int
    inputs: list[str]
    heads_per_layer: list[int]
    model_type: str
    parity: ParityReport

    @property
    def onnx_path(self) -> Path:
        return self.path / ONNX_FILE

    def to_dict(self) -> dict:
        return {"path": str(self.path), "opset": self.opset, "inputs": self.inputs,
                "heads_per_layer": self.heads_per_layer, "model_type": self.model_type,
                "max_abs_diff": self.parity.max_abs_diff, "argmax_agree": self.parity.argmax_agree,
                "parity_examples": self.parity.n_examples}


# ---- parity ------------------------------------------------------------------------------------
def session(path: Path, threads: int = 1, providers: list[str] | None = None,
            disabled_optimizers: list[str] | tuple[str, ...] = ()):
    """An ORT session; a file that does not load (truncated, not ONNX) is one ExportError.
    ``disabled_optimizers``: graph rewrites to turn off (a target profile's, for its timings)."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"ONNX file not found: {path}", "", "run `cahp-edge export` first")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), so, providers=providers or ["CPUExecutionProvider"],
                                    disabled_optimizers=list(disabled_optimizers))
    except Exception as e:
        raise ExportError(f"ONNX file {path} fails to load", _first_line(e),
                          "the file is truncated or corrupt; re-run `cahp-edge export`") from e


def example_batches(model, adapter, tokenizer=None, sentences=None, batch_size: int = 8,
                    max_length: int = 128) -> list[dict[str, np.ndarray]]:
    """Batches of model inputs (numpy int64) for parity: real sentences when a tokenizer exists."""
    names = adapter.export_inputs
    if tokenizer is not None:
        # a model with fewer positions than max_length (tiny or distilled) would crash on long sentences;
        # -2 leaves room for RoBERTa's position offset
        positions = int(getattr(model.config, "max_position_embeddings", max_length + 2) or max_length + 2)
        max_length = max(8, min(max_length, positions - 2))
        sents = list(sentences or DEFAULT_SENTENCES)
        out = []
        for i in range(0, len(sents), batch_size):
            enc = tokenizer(sents[i:i + batch_size], padding=True, truncation=True, max_length=max_length,
                            return_tensors="np")
            out.append(_select(enc, names))
        return out
    # no tokenizer (tiny test models): random ids with ragged padding, two shapes and a single row
    rng = np.random.default_rng(7)
    vocab = int(model.config.vocab_size)
    pad = int(getattr(model.config, "pad_token_id", 0) or 0)
    out = []
    for batch, seq in ((5, 13), (1, 7), (3, 21)):
        ids = rng.integers(5, vocab, size=(batch, seq), dtype=np.int64)
        mask = np.ones((batch, seq), dtype=np.int64)
        for r in range(1, batch):
            mask[r, seq - 2 * r:] = 0
        ids[mask == 0] = pad
        out.append(_select({"input_ids": ids, "attention_mask": mask,
                            "token_type_ids": np.zeros_like(ids)}, names))
    return out


def _select(enc, names) -> dict[str, np.ndarray]:
    d = {}
    for n in names:
        if n in enc:
            d[n] = np.asarray(enc[n], dtype=np.int64)
        elif n == "token_type_ids":
            d[n] = np.zeros_like(np.asarray(enc["input_ids"]), dtype=np.int64)
    return d


def torch_logits(model, batches) -> list[np.ndarray]:
    import torch

    outs = []
    with torch.inference_mode():
        for b in batches:
            outs.append(model(**{k: torch.from_numpy(v) for k, v in b.items()}).logits.float().numpy())
    return outs


def ort_logits(sess, batches) -> list[np.ndarray]:
    names = {i.name for i in sess.get_inputs()}
    return [sess.run(None, {k: v for k, v in b.items() if k in names})[0].astype(np.float32) for b in batches]


COSINE_TOL = 1e-5  # embeddings: a row whose cosine to PyTorch's is below 1 - this is a mismatch


def compare(ref: list[np.ndarray], got: list[np.ndarray], atol: float, label: str,
            task: str = "sequence-classification") -> ParityReport:
    """Collect every row whose output differs by more than atol, or whose argmax flips (classifiers, every
    token for taggers), or whose cosine to PyTorch falls below 1 - COSINE_TOL (embeddings)."""
    mismatches, worst, agree, n = [], 0.0, 0, 0
    min_cos = None
    for bi, (r, g) in enumerate(zip(ref, got, strict=True)):
        if r.shape != g.shape:
            mismatches.append(f"batch {bi}: shape {g.shape} != torch {r.shape}")
            continue
        diff = np.abs(r - g).reshape(len(r), -1).max(axis=-1) if r.size else np.zeros(len(r))
        if task == "sentence-embedding":
            cos = pair_cosines(r, g)
            min_cos = float(cos.min()) if min_cos is None else min(min_cos, float(cos.min()))
            same = cos >= 1 - COSINE_TOL
        else:
            same = (r.argmax(-1) == g.argmax(-1)).reshape(len(r), -1).all(-1)
        worst = max(worst, float(diff.max()) if diff.size else 0.0)
        agree += int(same.sum())
        n += len(same)
        for row in range(len(diff)):
            if diff[row] > atol or not same[row]:
                mismatches.append(f"batch {bi} row {row}: max|diff|={diff[row]:.2e}"
                                  + ("" if same[row] else " cosine below tolerance"
                                     if task == "sentence-embedding" else " argmax differs"))
    return ParityReport(atol, worst, n, agree / max(1, n), mismatches, min_cos)


def raise_if_mismatch(rep: ParityReport, label: str) -> None:
    if rep.ok:
        return
    more = len(rep.mismatches) - 5
    shown = "; ".join(rep.mismatches[:5]) + (f"; and {more} more" if more > 0 else "")
    raise ExportError(f"{label} does not match PyTorch on {len(rep.mismatches)} of {rep.n_examples} examples",
                      f"tolerance {rep.atol:g}: {shown}",
                      "report this with the model; try --opset 17 or export the unpruned model to compare")


def save_reference(path: Path, batches, logits) -> None:
    arrays = {}
    for i, (b, lg) in enumerate(zip(batches, logits, strict=True)):
        arrays.update({f"{i}/{k}": v for k, v in b.items()})
        arrays[f"{i}/logits"] = lg
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def load_reference(folder: Path) -> tuple[list[dict[str, np.ndarray]], list[np.ndarray]]:
    """The parity batches and PyTorch logits stored at export time."""
    path = Path(folder) / PARITY_FILE
    if not path.is_file():
        raise ExportError(f"{path.name} missing from {folder}", "later stages re-check parity against it",
                          "re-run `cahp-edge export`")
    with np.load(path) as z:
        keys = list(z.keys())
        n = 1 + max(int(k.split("/")[0]) for k in keys)
        batches = [{k.split("/")[1]: z[k] for k in keys if k.startswith(f"{i}/") and k != f"{i}/logits"}
                   for i in range(n)]
        logits = [z[f"{i}/logits"] for i in range(n)]
    return batches, logits


def _first_line(e: BaseException, limit: int = 200) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:limit] if lines else ''}"


# ---- export ------------------------------------------------------------------------------------
def _exporter_max_opset() -> int:
    try:
        from torch.onnx import _constants

        return int(_constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET)
    except (ImportError, AttributeError):  # pragma: no cover - older/newer torch layouts
        return 17


def check_opset(opset: int) -> None:
    hi = _exporter_max_opset()
    if not MIN_OPSET <= opset <= hi:
        raise ExportError(f"opset {opset} cannot be produced",
                          f"the installed torch exporter writes opsets {MIN_OPSET}..{hi} for this pipeline",
                          f"pass --opset between {MIN_OPSET} and {hi} (17 is the default) "
                          "or set opset in the target profile accordingly")


class _Logits:  # thin nn.Module wrapper built lazily (torch import stays inside functions)
    @staticmethod
    def wrap(model, names, extra: tuple[str, ...] = ()):
        import torch

        class Wrapper(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.m = model

            def forward(self, *args):
                out = self.m(**dict(zip(names, args, strict=True)))
                return (out.logits, *(getattr(out, e) for e in extra)) if extra else out.logits

        return Wrapper().eval()


def _resolve(model, tokenizer):
    """(torch model, tokenizer, adapter, source_hash) from a LoadedModel, a path or a model."""
    from cahp_edge.arch import get_adapter

    if isinstance(model, (str, Path)):
        from cahp_edge.model.load import load_model

        model = load_model(model, require_tokenizer=False)
    if hasattr(model, "adapter") and hasattr(model, "model"):  # LoadedModel
        return model.model, tokenizer or model.tokenizer, model.adapter, model.source_hash
    return model, tokenizer, get_adapter(model.config), ""


def export_onnx(model, out: Path, *, opset: int = 17, tokenizer=None, sentences=None, batches=None,
                overwrite: bool = False) -> OnnxModel:
    """Export a dense or pruned classifier to ``out/model.onnx`` and check parity with PyTorch."""
    check_opset(opset)
    model, tokenizer, adapter, source_hash = _resolve(model, tokenizer)
    model.eval()
    names = list(adapter.export_inputs)
    batches = batches or example_batches(model, adapter, tokenizer, sentences)
    heads = adapter.heads_per_layer(model)
    from cahp_edge.model.task_ops import task_of

    task = task_of(model)
    with atomic_dir(Path(out), overwrite=overwrite) as tmp:
        _export_file(model, names, tmp / ONNX_FILE, opset, task.onnx_output)
        ref = torch_logits(model, batches)
        rep = compare(ref, ort_logits(session(tmp / ONNX_FILE), batches), adapter.onnx_atol, "export",
                      task.name)
        raise_if_mismatch(rep, "exported ONNX model")
        save_reference(tmp / PARITY_FILE, batches, ref)
        write_side_files(tmp, model, tokenizer)
        meta = {"format": "cahp-onnx/1", "stage": "export", "opset": opset, "inputs": names,
                "outputs": [task.onnx_output], "task": task.name,
                "heads_per_layer": heads, "head_size": adapter.head_size(model.config),
                "neurons_per_layer": adapter.neurons_per_layer(model),
                "model_type": model.config.model_type,
                "ort_model_type": adapter.ort_model_type, "source_hash": source_hash, "parity": asdict(rep)}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return OnnxModel(Path(out), opset, names, heads, model.config.model_type, rep)


export = export_onnx  # stage name used by the pipeline


def _export_file(model, names: list[str], path: Path, opset: int, output: str = "logits") -> None:
    import warnings

    import torch

    # batch 2, length 16: a length-1 or batch-1 example can pin an axis despite dynamic_axes
    ids = torch.randint(5, int(model.config.vocab_size), (2, 16))
    example = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
               "token_type_ids": torch.zeros_like(ids)}
    args = tuple(example[n] for n in names)
    out_axes = {0: "batch_size", 1: "sequence_length"} if output == "logits" and _per_token(model) else \
        {0: "batch_size"}
    # embedding graphs also return the token states (second output): optimum's feature-extraction class
    # and sentence-transformers' ONNX backend read ``last_hidden_state``; devices read the first output
    extra = ("last_hidden_state",) if output == "sentence_embedding" else ()
    axes = {n: {0: "batch_size", 1: "sequence_length"} for n in names} | {output: out_axes} | {
        e: {0: "batch_size", 1: "sequence_length"} for e in extra}
    big = sum(p.numel() * p.element_size() for p in model.parameters()) > TWO_GB
    try:
        with warnings.catch_warnings(), torch.inference_mode(False):
            warnings.simplefilter("ignore")
            torch.onnx.export(_Logits.wrap(model, names, extra), args, str(path), input_names=names,
                              output_names=[output, *extra], dynamic_axes=axes, opset_version=opset,
                              do_constant_folding=True, dynamo=False)
    except OSError as e:  # disk full, permissions, name too long: the output's fault, not the opset's
        from cahp_edge.fsutil import _disk_error

        raise _disk_error(Path(path), e) from e
    except Exception as e:
        if "No space left on device" in str(e) or isinstance(e.__cause__, OSError):
            from cahp_edge.fsutil import _disk_error

            err = e.__cause__ if isinstance(e.__cause__, OSError) else OSError(28, "No space left on device")
            raise _disk_error(Path(path), err) from e
        raise ExportError("torch.onnx.export failed", _first_line(e),
                          "check the model loads and runs in PyTorch; try another --opset") from e
    finally:
        model.eval()  # the exporter restores the wrapper's (train) mode recursively
    if big:
        import onnx

        m = onnx.load(str(path))
        onnx.save(m, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=path.name + ".data")


def _per_token(model) -> bool:
    from cahp_edge.model.task_ops import task_of

    return task_of(model).output_rank == 3


def write_side_files(folder: Path, model, tokenizer) -> None:
    """config.json (source model_type, label maps), tokenizer files (as ORTModel* expects) and, for
    embedding models, the pooling the graph computes."""
    if hasattr(model, "pooling"):
        from cahp_edge.model.embedder import write_pooling

        write_pooling(folder, model.pooling, hidden=int(model.config.hidden_size))
    cfg = model.config
    from cahp_edge.model.task_ops import task_of

    task = task_of(model).name
    if task != "sequence-classification":  # the torch-free runner reads the task from config.json
        cfg.cahp_task = task
    if not getattr(cfg, "id2label", None):
        cfg.id2label = {i: f"LABEL_{i}" for i in range(cfg.num_labels)}
        cfg.label2id = {v: k for k, v in cfg.id2label.items()}
    cfg.save_pretrained(str(folder))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))


def read_meta(folder: Path) -> dict:
    """The ``cahp_onnx.json`` of a stage folder (export, optimize or quantize)."""
    folder = Path(folder)
    f = folder / META_FILE
    if not f.is_file():
        raise ExportError(f"{folder} is not a cahp-edge ONNX folder", f"{META_FILE} is missing",
                          "pass the folder written by `cahp-edge export`")
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportError(f"{f} is unreadable", str(e), "re-run `cahp-edge export`") from e
