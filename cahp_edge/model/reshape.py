"""Physical head and FFN-neuron surgery: apply a HeadPlan to a model (saving and loading it:
:mod:`cahp_edge.model.load`).

    cahp-edge reshape --model ckpt/ --plan plan.json --out pruned/

transformers 5.x has no ``prune_heads``; this module owns the surgery for every registered family
and works on transformers 4.57 too. A pruned directory holds ``config.json`` (the *source*
config), ``pruned_model.safetensors`` and ``cahp_heads.json``. The weights file has a non-standard
name on purpose: plain ``AutoModelForSequenceClassification.from_pretrained(dir)`` then fails
loudly ("no file named model.safetensors") even with ``ignore_mismatched_sizes=True``, which would
otherwise re-initialise every pruned matrix without a word (checked on 4.57.6 and 5.x by
tests/test_foundation_reshape.py). Renaming the file to model.safetensors defeats the guard: plain
loading then raises a size mismatch, but with ``ignore_mismatched_sizes=True`` it re-initialises the
pruned matrices silently. Use :func:`cahp_edge.model.load.load_pruned`.
"""

from __future__ import annotations

import copy

from cahp_edge.arch import Adapter, get_adapter
from cahp_edge.errors import PlanError
from cahp_edge.plan import HeadPlan


def reshape(model, plan: HeadPlan, adapter: Adapter | None = None, copy_model: bool = True):
    """Return a model that physically keeps only ``plan.kept`` heads and, for a plan that prunes FFN
    neurons, only ``plan.kept_neurons`` (input untouched by default)."""
    adapter = adapter or get_adapter(model.config)
    plan.check_model(adapter.heads_per_layer(model), adapter.neurons_per_layer(model))
    out = copy.deepcopy(model) if copy_model else model
    hs = adapter.head_size(out.config)
    for layer, keep in zip(adapter.layers(out), plan.kept, strict=True):
        if len(keep) == adapter.heads_in_layer(layer, hs):
            continue  # keep-all layer: untouched
        adapter.keep_heads(layer, list(keep), hs)
    if plan.prunes_neurons:
        for layer, keep, width in zip(adapter.layers(out), plan.kept_neurons, plan.num_neurons, strict=True):
            if len(keep) < width:
                adapter.keep_neurons(layer, list(keep))
    got = (adapter.heads_per_layer(out), adapter.neurons_per_layer(out))
    want = (plan.heads_per_layer, plan.neurons_per_layer or adapter.neurons_per_layer(model))
    if got != want:  # self-check, as Torch-Pruning does after every group
        raise PlanError("reshape produced the wrong head or neuron counts",
                        f"expected {want}, got {got}", "report this as a bug")
    return out
