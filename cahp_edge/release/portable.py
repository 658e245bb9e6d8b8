"""What a release says about the machine that built it: file names, not absolute paths; floats rounded.

Applied once, to every document the packager writes (manifest, metrics.json, cahp_heads.json,
config.json, target.json, the model card and report.html), never to user data (eval.jsonl, tokenizer
files). A path is shown by its file name (its sha256 sits beside it where it matters: data files,
checkpoint, every release file); a stage folder of the build cache by the stage's name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# an absolute POSIX path with at least one folder (so "/month" or "km/h" are left alone); not part of a
# URL ("ssh://host/x"), a relative path ("a/b") or a fraction ("1/2")
_ABS_PATH = re.compile(r"(?<![\w.~:/-])/(?:[^\s/'\"(),;<>`|]+/)+[^\s/'\"(),;<>`|]*")
SIGNIFICANT = 6  # digits every float in a release document keeps


def short_path(path: str) -> str:
    parts = [p for p in path.split("/") if p]
    if ".cahp-cache" in parts[:-1]:  # .../.cahp-cache/<stage>-<key>/artifact/...: the stage says it
        return parts[parts.index(".cahp-cache") + 1]
    return parts[-1] if parts else path


def portable_text(text: str) -> str:
    return _ABS_PATH.sub(lambda m: short_path(m.group(0)), text)


def portable(obj: Any, round_floats: bool = True) -> Any:
    """A copy of a JSON-like document with absolute paths shortened and (ours only) floats rounded."""
    if isinstance(obj, Mapping):
        return {k: portable(v, round_floats) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [portable(v, round_floats) for v in obj]
    if isinstance(obj, str):
        return portable_text(obj)
    if isinstance(obj, float) and round_floats:
        return float(f"{obj:.{SIGNIFICANT}g}")
    return obj


def portable_json(path, round_floats: bool = True) -> str:
    """A JSON file's text with :func:`portable` applied (Hugging Face configs: paths only, floats as is)."""
    import json
    from pathlib import Path

    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    return json.dumps(portable(doc, round_floats), indent=2, ensure_ascii=False) + "\n"
