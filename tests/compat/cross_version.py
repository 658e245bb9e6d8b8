"""Run inside another transformers version (the 4.57 compat venv) to check pruned folders across versions.

    $CAHP_COMPAT_PYTHON -m tests.compat.cross_version WORKDIR      # from the repository root

1. every folder WORKDIR/from_main/<family>/pruned (written by the main venv) is loaded with load_pruned
   and run on WORKDIR/from_main/<family>/inputs.npz; logits go to .../logits_here.npy;
2. for every tiny family, a model is built, reshaped and saved here to WORKDIR/from_here/<family>/
   (pruned/, inputs.npz, logits.npy) for the main venv to load.
Prints one JSON line: {"transformers": version, "loaded": [...], "saved": [...]}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from cahp_edge.model.load import load_pruned, save_pruned
from cahp_edge.model.reshape import reshape
from cahp_edge.plan import HeadPlan
from tests.helpers.tiny import TINY_CONFIGS, spread, tiny_batch, tiny_model

# layer 1 keeps no heads; the others keep an uneven subset
KEPT = {3: ((0, 3), (), (1, 2, 3)), 2: ((1, 2, 5), ())}


def plan_for(model) -> HeadPlan:
    from cahp_edge.arch import get_adapter

    heads = get_adapter(model.config).heads_per_layer(model)
    return HeadPlan(tuple(heads), KEPT[len(heads)])


def main(work: Path) -> None:
    import transformers

    torch.set_num_threads(1)
    loaded, saved = [], []
    for d in sorted((work / "from_main").glob("*/")):
        lm = load_pruned(d / "pruned")
        inputs = {k: torch.from_numpy(v) for k, v in np.load(d / "inputs.npz").items()}
        with torch.no_grad():
            np.save(d / "logits_here.npy", lm.model(**inputs).logits.numpy())
        loaded.append(d.name)
    for family in sorted(TINY_CONFIGS):
        d = work / "from_here" / family
        d.mkdir(parents=True)
        model = spread(tiny_model(family, num_labels=3, seed=11))
        plan = plan_for(model)
        pruned = reshape(model, plan)
        save_pruned(pruned, plan, d / "pruned", source_hash=f"compat-{family}")
        batch = tiny_batch(model)
        np.savez(d / "inputs.npz", **{k: v.numpy() for k, v in batch.items()})
        with torch.no_grad():
            np.save(d / "logits.npy", pruned(**batch).logits.numpy())
        saved.append(family)
    print(json.dumps({"transformers": transformers.__version__, "loaded": loaded, "saved": saved}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
