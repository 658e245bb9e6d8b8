"""Options of the validate stage that override or extend what the target profile says."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from cahp_edge.options import StageOptions, opt


class BenchOverride(BaseModel):
    """Overrides every target's benchmark settings (quick runs, tests); None keeps the profile's.

    A plain model (a table of its own in build.toml): its errors are reported by the enclosing one.
    """

    model_config = ConfigDict(extra="forbid")

    batch: int | None = opt(None, "Benchmark batch size.", ge=1)
    seq_len: int | None = opt(None, "Benchmark sequence length.", ge=1)
    warmup: int | None = opt(None, "Untimed warm-up runs.", ge=0)
    runs: int | None = opt(None, "Timed latency runs (overrides the targets').", ge=1)


class ValidateOptions(StageOptions):
    eval_limit: int | None = opt(None, "Evaluate on the first N rows only (quick runs).", ge=1)
    compare_dense: bool = opt(True, "Also measure the dense model (metrics.json: dense vs pruned vs int8).")
    benchmark: BenchOverride = Field(default_factory=BenchOverride, description="Benchmark overrides.")
