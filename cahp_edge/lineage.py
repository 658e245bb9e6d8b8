"""Where a build's outputs come from: the record of one finished stage and the code version.

Shared by the build cache (which writes records) and the release (which writes them into the
manifest and keys the release on them), so neither imports the other.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any


@lru_cache(maxsize=1)
def code_version() -> str:
    """Package version + hash of every cahp_edge source file (any code change invalidates the cache)."""
    import cahp_edge

    root = Path(cahp_edge.__file__).parent
    h = hashlib.sha256(cahp_edge.__version__.encode())
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix in (".py", ".toml", ".json") and "__pycache__" not in p.parts:
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return f"{cahp_edge.__version__}+{h.hexdigest()[:12]}"


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


@dataclass
class StageRecord:
    """One finished stage: where its artifact lives and what it reported."""

    stage: str
    key: str
    path: Path  # OUT/.cahp-cache/<stage>-<key>/artifact
    tree: str  # content hash of the artifact
    summary: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    hit: bool = False
    inputs: dict[str, Any] = field(default_factory=dict)

    def lineage(self) -> dict[str, Any]:
        return {"key": self.key, "artifact_sha256": self.tree, "seconds": round(self.seconds, 2),
                "cached": self.hit, "inputs": self.inputs, "summary": self.summary}
