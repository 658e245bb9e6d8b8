"""What produced a plan: the versions every plan and comparison records."""

from __future__ import annotations

import platform


def versions() -> dict:
    import numpy as np
    import torch
    import transformers

    import cahp_edge

    return {
        "cahp_edge": cahp_edge.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
