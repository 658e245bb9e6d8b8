"""Options of the quantize stage that are not the target's (its recipe lives in the target profile)."""

from __future__ import annotations

from cahp_edge.options import StageOptions, opt


class QuantizeOptions(StageOptions):
    quant_calib_size: int | None = opt(
        None, "Calibration examples for static int8 (default: the recipe's).", ge=1)
