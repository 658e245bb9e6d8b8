"""Physical head surgery: apply a HeadPlan, save it, load it back identically.

    cahp-edge reshape --model ckpt/ --plan plan.json --out pruned/

transformers 5.x has no ``prune_heads``; this module owns the surgery for every registered family
and works on transformers 4.57 too. A pruned directory holds ``config.json`` (the *source*
config), ``pruned_model.safetensors`` and ``cahp_heads.json``. The weights file has a non-standard
name on purpose: plain ``AutoModelForSequenceClassification.from_pretrained(dir)`` then fails
loudly ("no file named model.safetensors") even with ``ignore_mismatched_sizes=True``, which would
otherwise re-initialise every pruned matrix without a word (checked on 4.57.6 and 5.x by
tests/test_foundation_reshape.py). Renaming the file to model.safetensors defeats the guard: plain
loading then raises a size mismatch, but with ``ignore_mismatched_sizes=True`` it re-initialises the
pruned matrices silently. Use :func:`load_pruned`.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from cahp_edge.arch import Adapter, get_adapter
from cahp_edge.errors import ModelError, PlanError
from cahp_edge.fsutil import atomic_dir
from cahp_edge.modeling import HEADS_FILE, PRUNED_WEIGHTS, LoadedModel, check_safetensors, load_tokenizer
from cahp_edge.plan import HeadPlan


def reshape(model, plan: HeadPlan, adapter: Adapter | None = None, copy_model: bool = True):
    """Return a model that physically keeps only ``plan.kept`` heads (input untouched by default)."""
    adapter = adapter or get_adapter(model.config)
    plan.check_model(adapter.heads_per_layer(model))
    out = copy.deepcopy(model) if copy_model else model
    hs = adapter.head_size(out.config)
    for layer, keep in zip(adapter.layers(out), plan.kept, strict=True):
        if len(keep) == adapter.heads_in_layer(layer, hs):
            continue  # keep-all layer: untouched
        adapter.keep_heads(layer, list(keep), hs)
    got = adapter.heads_per_layer(out)
    if got != plan.heads_per_layer:  # self-check, as Torch-Pruning does after every group
        raise PlanError("reshape produced the wrong head counts",
                        f"expected {plan.heads_per_layer}, got {got}", "report this as a bug")
    return out


def save_pruned(model, plan: HeadPlan, out: Path, tokenizer=None, source_hash: str = "",
                overwrite: bool = False) -> Path:
    """Write a pruned model directory atomically (complete or absent)."""
    from safetensors.torch import save_model

    adapter = get_adapter(model.config)
    source = [adapter.num_heads(model.config)] * adapter.num_layers(model.config)
    # load_pruned rebuilds from the source config, so the plan must be over the source's heads
    if list(plan.num_heads) != source:
        raise PlanError("plan is not over the source model's heads",
                        f"config.json has heads per layer {source}, plan.num_heads is {list(plan.num_heads)}",
                        "save with the plan that reshaped the dense model (plans do not stack)")
    if adapter.heads_per_layer(model) != plan.heads_per_layer:
        raise PlanError("model and plan disagree",
                        f"model keeps {adapter.heads_per_layer(model)} heads per layer, "
                        f"plan says {plan.heads_per_layer}", "reshape the model with this plan first")
    with atomic_dir(Path(out), overwrite=overwrite) as tmp:
        model.config.save_pretrained(str(tmp))
        save_model(model, str(tmp / PRUNED_WEIGHTS))
        meta = plan.to_dict()
        meta.update({"source_hash": source_hash, "model_type": model.config.model_type,
                     "weights": PRUNED_WEIGHTS})
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


def load_pruned(path: str | Path, require_tokenizer: bool = False) -> LoadedModel:
    """Rebuild a pruned model bit-identically (transformers 4.57 and 5.x)."""
    from safetensors.torch import load_model as st_load
    from transformers import AutoConfig, AutoModelForSequenceClassification

    path = Path(path)
    plan, meta = read_heads_file(path)
    weights = path / PRUNED_WEIGHTS
    if not weights.is_file():
        raise ModelError(f"{weights.name} missing from pruned model {path}", "",
                         "re-run `cahp-edge reshape` or re-copy the folder")
    check_safetensors(weights)
    config = AutoConfig.from_pretrained(str(path))
    adapter = get_adapter(config)
    torch.manual_seed(0)  # the skeleton's random init is overwritten below; seed keeps it cheap to debug
    skeleton = AutoModelForSequenceClassification.from_config(config, attn_implementation="eager")
    model = reshape(skeleton, plan, adapter, copy_model=False)
    try:
        st_load(model, str(weights), strict=True)
    except Exception as e:
        raise ModelError(f"weights in {path} do not match its cahp_heads.json",
                         f"{type(e).__name__}: {str(e)[:300]}",
                         "re-run `cahp-edge reshape`; do not edit pruned folders by hand") from e
    model.eval()
    tok = load_tokenizer(path, required=require_tokenizer)
    return LoadedModel(model, tok, adapter, path, meta.get("source_hash", ""), plan.heads_per_layer,
                       pruned=True)
