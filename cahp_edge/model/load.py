"""Load checkpoints safely (known family, intact weights, no unpickling unless asked); save/load pruned ones.

    loaded = load_model("path/to/checkpoint")          # dense or cahp-pruned directory
    loaded.model, loaded.tokenizer, loaded.adapter, loaded.source_hash
    save_pruned(model, plan, "pruned/", tokenizer)     # after cahp_edge.model.reshape.reshape
"""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from cahp_edge.arch import Adapter, get_adapter
from cahp_edge.errors import ModelError, PlanError
from cahp_edge.fsutil import atomic_dir, sha256_file
from cahp_edge.model.task_ops import task_of
from cahp_edge.plan import HeadPlan
from cahp_edge.tasks import Task, detect_task, get_task

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json", "pruned_model.safetensors")
PRUNED_WEIGHTS = "pruned_model.safetensors"
HEADS_FILE = "cahp_heads.json"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class LoadedModel:
    model: object  # transformers PreTrainedModel (eval mode, eager attention)
    tokenizer: object | None
    adapter: Adapter
    path: Path
    source_hash: str  # sha256 over the checkpoint's config + weights (the source, for pruned dirs)
    heads_per_layer: list[int]
    pruned: bool = False
    task: str = "sequence-classification"  # cahp_edge.tasks name
    notes: tuple[str, ...] = ()  # defaults the loader chose and the user should be told (e.g. pooling)


def index_shards(path: Path) -> list[str]:
    """The shard files every ``*.index.json`` of a checkpoint names (what loading reads), checked to be
    plain files inside the folder: a shard path that escapes it is refused, never skipped."""
    root = Path(path).resolve()
    shards: set[str] = set()
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        f = Path(path) / index
        if not f.is_file():
            continue
        try:
            weight_map = json.loads(f.read_text(encoding="utf-8"))["weight_map"]
            names = {str(v) for v in weight_map.values()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ModelError(f"{f} is not a readable weight index", str(e)[:200],
                             "re-download or re-save the checkpoint") from None
        for name in sorted(names):
            p = (Path(path) / name).resolve()
            if Path(name).is_absolute() or root not in p.parents:
                raise ModelError(f"{f} names shard {name!r} outside the checkpoint folder",
                                 "shards must be files inside the folder (a hostile index could read other "
                                 "files)", "fix the index or re-save the checkpoint")
            if not p.is_file():
                raise ModelError(f"shard {name!r} named by {f.name} is missing from {path}", "",
                                 "re-download or re-copy the checkpoint")
        shards |= names
    return sorted(shards)


def checkpoint_hash(path: Path) -> str:
    """sha256 over exactly what loading reads: config.json, the weight files, and every shard an index
    names (whatever its file name), so a changed shard is never served from the build cache."""
    import hashlib

    h = hashlib.sha256()
    for name in ("config.json", *WEIGHT_FILES):
        p = path / name
        if p.is_file():
            h.update(name.encode())
            h.update(sha256_file(p).encode())
    shards = set(index_shards(path)) | {p.name for p in path.glob("model-*.safetensors")}
    for name in sorted(shards):
        h.update(name.encode())
        h.update(sha256_file(path / name).encode())
    return h.hexdigest()


def resolve_model_dir(model: str | Path) -> Path:
    """A local directory, or a hub id downloaded to the local cache (needs internet)."""
    p = Path(model).expanduser()
    if p.exists():
        if not p.is_dir():
            raise ModelError(f"model path {p} is a file, not a checkpoint folder", "",
                             "pass the folder that holds config.json and the weights")
        return p
    if _HUB_ID.match(str(model)) and not str(model).startswith((".", "/")):
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(str(model), allow_patterns=["*.json", "*.safetensors", "*.txt",
                                                                      "*.model", "tokenizer*"]))
        except Exception as e:  # network, auth, not found: all one message
            raise ModelError(f"could not download model '{model}' from the hub", f"{type(e).__name__}: {e}",
                             "check the name and your network, or pass a local folder") from e
    raise ModelError(f"model folder not found: {p}", "",
                     "pass an existing checkpoint folder or a hub id like org/name")


# what an encoder config may ask for before anything is allocated: far above any real model (BERT-large:
# 24 layers, 1024 hidden, 30k vocab), far below what would exhaust memory building the skeleton
CONFIG_LIMITS = {"num_hidden_layers": 256, "n_layers": 256, "num_attention_heads": 512, "n_heads": 512,
                 "hidden_size": 32768, "dim": 32768, "intermediate_size": 262144, "hidden_dim": 262144,
                 "vocab_size": 2_000_000, "max_position_embeddings": 1_048_576, "num_labels": 100_000}
MAX_CONFIG_BYTES = 4 << 20


def read_config_dict(path: Path) -> dict:
    cfg = path / "config.json"
    if not cfg.is_file():  # also false for a FIFO or device: never opened, so never a hang
        raise ModelError(f"no config.json in {path}", "a Hugging Face checkpoint folder needs config.json",
                         "pass the folder written by save_pretrained()")
    if cfg.stat().st_size > MAX_CONFIG_BYTES:
        raise ModelError(f"config.json in {path} is {cfg.stat().st_size >> 20} MiB", "a config is a few KB",
                         "restore the file from the original checkpoint")
    try:
        d = json.loads(cfg.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ModelError(f"config.json in {path} is not valid JSON", str(e)[:200], "restore the file") from e
    if not isinstance(d, dict) or "model_type" not in d:
        raise ModelError(f"config.json in {path} has no model_type", "",
                         "restore the file from the original checkpoint")
    for key, limit in CONFIG_LIMITS.items():
        v = d.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 0 < v <= limit):
            raise ModelError(f"config.json in {path}: {key} = {v!r} is out of range",
                             f"expected a whole number in 1..{limit:,}", "restore the file from the original "
                             "checkpoint")
    return d


def check_safetensors(path: Path) -> None:
    """Cheap integrity check: header parses and every tensor's byte range lies inside the file."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) < 8:
                raise ValueError("file shorter than its 8-byte header length")
            (n,) = struct.unpack("<Q", raw)
            if n > size - 8 or n > 100_000_000:
                raise ValueError(f"header length {n} exceeds file size {size}")
            header = json.loads(f.read(n))
        if not isinstance(header, dict):
            raise ValueError(f"header is JSON {type(header).__name__}, not an object")
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        if 8 + n + end > size:
            raise ValueError(f"file is {size} bytes but its tensors need {8 + n + end}")
    except (ValueError, KeyError, TypeError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"weights file {path} is corrupt or truncated", str(e),
                         "re-copy or re-download the checkpoint") from e


def check_weights(path: Path, trust_pickle: bool) -> None:
    shards = index_shards(path)  # every shard an index names: inside the folder, present
    st = [path / "model.safetensors", path / PRUNED_WEIGHTS, *path.glob("model-*-of-*.safetensors"),
          *(path / s for s in shards if s.endswith(".safetensors"))]
    st = list(dict.fromkeys(p for p in st if p.is_file()))
    for p in st:
        check_safetensors(p)
    if st or (path / "model.safetensors.index.json").is_file():
        return
    if (path / "pytorch_model.bin").is_file() or (path / "pytorch_model.bin.index.json").is_file():
        if not trust_pickle:
            raise ModelError(f"{path} holds only a pickle checkpoint (pytorch_model.bin)",
                             "unpickling can run arbitrary code, so it is refused by default",
                             "convert it to safetensors, or pass --trust-pickle if you trust its origin")
        return
    raise ModelError(f"no model weights in {path}", "expected model.safetensors",
                     "pass the folder written by save_pretrained()")


def load_tokenizer(path: Path, required: bool = True):
    from transformers import AutoTokenizer

    if not any((path / n).is_file() for n in ("tokenizer.json", "vocab.txt", "tokenizer_config.json",
                                                "sentencepiece.bpe.model", "vocab.json")):
        if required:
            raise ModelError(f"no tokenizer files in {path}", "tokenizer.json or vocab files are missing",
                             "copy the tokenizer files from the original checkpoint into this folder")
        return None
    try:
        return AutoTokenizer.from_pretrained(str(path))
    except Exception as e:
        raise ModelError(f"tokenizer in {path} could not be loaded", f"{type(e).__name__}: {e}",
                         "copy the tokenizer files from the original checkpoint") from e


def resolve_task(path: Path, cfg: dict, task: str | None, require: bool) -> Task | None:
    """The checkpoint's task (cahp_edge.tasks.detect_task), or ``task`` when given. ``require``: a model
    that says nothing (a bare encoder) is refused with the two ways forward."""
    found = detect_task(path, cfg)
    if task is not None:
        want = get_task(task)
        if found is not None and found.labelled and want.name != found.name:
            raise ModelError(f"{path} is a {found.name} model, not {want.name}",
                             f"config.json architectures={cfg.get('architectures')}",
                             f"pass --task {found.name}, or fine-tune a base encoder for {want.name}")
        return want
    if found is None and require:
        archs = cfg.get("architectures") or []
        raise ModelError(f"{path} is not a fine-tuned model for a known task (architectures={archs})",
                         "pruning needs a classifier, a token classifier or a sentence-embedding model",
                         "fine-tune it first (cahp-edge finetune --model ... --data ...), or pass "
                         "--task sentence-embedding to prune it as an embedding model")
    return found


def load_model(model: str | Path, num_labels: int | None = None, trust_pickle: bool = False,
               require_tokenizer: bool = True, require_classifier: bool = False,
               task: str | None = None) -> LoadedModel:
    """Load a dense or cahp-pruned model for its task (a sequence classifier when nothing says otherwise)
    with eager attention, in eval mode. ``require_classifier``: refuse a bare encoder with no task."""
    path = resolve_model_dir(model)
    cfg = read_config_dict(path)
    adapter = get_adapter(_config_like(cfg))
    task = None if task == "auto" else task  # auto: what the checkpoint says
    if (path / HEADS_FILE).is_file():

        lm = load_pruned(path, require_tokenizer=require_tokenizer)
        check_vocab(lm.tokenizer, lm.model.config, path)
        if task is not None and task != lm.task:
            raise ModelError(f"{path} was pruned as a {lm.task} model, not {task}", "",
                             f"pass --task {lm.task}, or prune the dense model for {task}")
        return lm
    check_weights(path, trust_pickle)
    if task is None and num_labels is not None:  # a head of this size is asked for: a classifier to train
        task = "sequence-classification"
    found = resolve_task(path, cfg, task, require_classifier)
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoModelForTokenClassification

    kwargs = {"attn_implementation": "eager"}
    if num_labels is not None:
        kwargs["num_labels"] = num_labels
    cls = {"sentence-embedding": AutoModel, "token-classification": AutoModelForTokenClassification}.get(
        found.name if found else "", AutoModelForSequenceClassification)
    if cls is AutoModel:
        kwargs.pop("num_labels", None)
    try:
        m, info = cls.from_pretrained(
            str(path), use_safetensors=not trust_pickle or None, output_loading_info=True, **kwargs)
    except Exception as e:
        raise ModelError(f"could not load the checkpoint in {path}", f"{type(e).__name__}: {str(e)[:300]}",
                         "check that the folder is a complete save_pretrained() checkpoint") from e
    # transformers re-initialises missing weights with a warning only; a missing encoder weight is a
    # damaged checkpoint (a missing classifier/pooler is a base encoder about to be fine-tuned)
    prefix = "" if cls is AutoModel else f"{m.base_model_prefix}."
    lost = sorted(k for k in info.get("missing_keys", ()) if k.startswith(prefix) and "pooler." not in k)
    if lost:
        raise ModelError(f"the checkpoint in {path} lacks {len(lost)} encoder weight(s)", f"e.g. {lost[0]}",
                         "re-copy or re-download the complete checkpoint")
    notes: tuple[str, ...] = ()
    if cls is AutoModel:
        from cahp_edge.model.embedder import DEFAULT_NOTE, DEFAULT_POOLING, SentenceEmbedder, read_pooling

        pooling = read_pooling(path)
        notes = () if pooling is not None else (DEFAULT_NOTE,)
        m = SentenceEmbedder(m, pooling or DEFAULT_POOLING)
    m.eval()
    tok = load_tokenizer(path, required=require_tokenizer)
    check_vocab(tok, m.config, path)
    return LoadedModel(m, tok, adapter, path, checkpoint_hash(path), adapter.heads_per_layer(m),
                       task=found.name if found else "sequence-classification", notes=notes)


def check_vocab(tok, config, path: Path) -> None:
    """A tokenizer from another model emits ids past the embedding table: an IndexError mid-run otherwise."""
    size = getattr(config, "vocab_size", None)
    if tok is None or not size:
        return
    top = max(tok.get_vocab().values(), default=-1)
    if top >= size:
        raise ModelError(f"the tokenizer in {path} does not belong to its model",
                         f"it has token ids up to {top} but the model's vocabulary has {size} entries",
                         "copy the tokenizer files of the checkpoint the weights came from")


class _config_like:  # tiny view so adapters can be looked up before transformers parses
    def __init__(self, d: dict) -> None:
        self.__dict__.update(d)


def num_threads_hint() -> int:
    return max(1, len(os.sched_getaffinity(0)))


# ---- pruned model folders (cahp_heads.json + pruned_model.safetensors) ----------------------------
def save_pruned(model, plan: HeadPlan, out: Path, tokenizer=None, source_hash: str = "",
                overwrite: bool = False) -> Path:
    """Write a pruned model directory atomically (complete or absent)."""
    from safetensors.torch import save_model

    adapter = get_adapter(model.config)
    n_layers = adapter.num_layers(model.config)
    # load_pruned rebuilds from the source config, so the plan must be over the source's units
    units = [("heads", "heads", [adapter.num_heads(model.config)] * n_layers, plan.num_heads,
              adapter.heads_per_layer(model), plan.heads_per_layer)]
    if plan.prunes_neurons:
        units.append(("FFN neurons", "neurons", [adapter.ffn_width(model.config)] * n_layers,
                      plan.num_neurons, adapter.neurons_per_layer(model), plan.neurons_per_layer))
    for unit, field, source, planned, model_kept, plan_kept in units:
        if list(planned) != source:
            raise PlanError(f"plan is not over the source model's {unit}",
                            f"config.json has {unit} per layer {source}, plan.num_{field} is {list(planned)}",
                            "save with the plan that reshaped the dense model (plans do not stack)")
        if model_kept != plan_kept:
            raise PlanError("model and plan disagree",
                            f"model keeps {model_kept} {unit} per layer, plan says {plan_kept}",
                            "reshape the model with this plan first")
    with atomic_dir(Path(out), overwrite=overwrite) as tmp:
        model.config.save_pretrained(str(tmp))
        save_model(model, str(tmp / PRUNED_WEIGHTS))
        meta = plan.to_dict()
        meta.update({"source_hash": source_hash, "model_type": model.config.model_type,
                     "weights": PRUNED_WEIGHTS, "task": task_of(model).name})
        if hasattr(model, "pooling"):
            from cahp_edge.model.embedder import write_pooling

            write_pooling(tmp, model.pooling)
        (tmp / HEADS_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
    return Path(out)


def read_heads_file(path: Path) -> tuple[HeadPlan, dict]:
    f = path / HEADS_FILE
    try:
        meta = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PlanError(f"{f} is unreadable or not JSON", str(e), "re-run `cahp-edge reshape`") from e
    return HeadPlan.from_dict(meta, source=str(f)), meta


def pruned_skeleton(path: Path):
    """(model, adapter, plan, meta): the pruned architecture from config.json + cahp_heads.json, with
    random weights. A release folder has both files, so its shape can be inspected without a checkpoint."""
    import torch
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
    )

    from cahp_edge.model.reshape import reshape

    plan, meta = read_heads_file(path)
    try:
        config = AutoConfig.from_pretrained(str(path))
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read {path / 'config.json'}", str(e).splitlines()[0][:300],
                         "re-copy the folder") from e
    adapter = get_adapter(config)
    torch.manual_seed(0)  # random init (overwritten when weights are loaded); seeded so runs repeat
    task = meta.get("task", "sequence-classification")
    if task == "sentence-embedding":
        from cahp_edge.model.embedder import DEFAULT_POOLING, SentenceEmbedder, read_pooling

        skeleton = SentenceEmbedder(AutoModel.from_config(config, attn_implementation="eager"),
                                    read_pooling(path) or DEFAULT_POOLING)
    else:
        cls = AutoModelForTokenClassification if task == "token-classification" else \
            AutoModelForSequenceClassification
        skeleton = cls.from_config(config, attn_implementation="eager")
    return reshape(skeleton, plan, adapter, copy_model=False), adapter, plan, meta


def load_pruned(path: str | Path, require_tokenizer: bool = False) -> LoadedModel:
    """Rebuild a pruned model bit-identically (transformers 4.57 and 5.x)."""
    from safetensors.torch import load_model as st_load

    path = Path(path)
    weights = path / PRUNED_WEIGHTS
    if not weights.is_file():
        raise ModelError(f"{weights.name} missing from pruned model {path}", "",
                         "re-run `cahp-edge reshape` or re-copy the folder")
    check_safetensors(weights)
    model, adapter, plan, meta = pruned_skeleton(path)
    try:
        st_load(model, str(weights), strict=True)
    except Exception as e:
        raise ModelError(f"weights in {path} do not match its cahp_heads.json",
                         f"{type(e).__name__}: {str(e)[:300]}",
                         "re-run `cahp-edge reshape`; do not edit pruned folders by hand") from e
    model.eval()
    tok = load_tokenizer(path, required=require_tokenizer)
    return LoadedModel(model, tok, adapter, path, meta.get("source_hash", ""), plan.heads_per_layer,
                       pruned=True, task=meta.get("task", "sequence-classification"))
