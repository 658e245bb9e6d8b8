"""Refresh the summary table of tests/hostile/README.md from a recorded run of the hostile suite.

    CAHP_HOSTILE_RECORD=/tmp/hostile.jsonl .venv/bin/python -m pytest -q tests/hostile
    .venv/bin/python tests/hostile/make_table.py /tmp/hostile.jsonl tests/hostile/README.md

Every `fails()` call of the suite is one hostile input: the command, the exit code and the one stderr
line it produced (temporary paths shortened). The table goes between the markers of the doc.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

START, END = "<!-- hostile-table:start -->", "<!-- hostile-table:end -->"
_TMP = re.compile(r"/tmp/pytest-of-[^/\s]+/pytest-\d+/[^/\s]+|/tmp/cahp-[\w.-]+")


def _input_name(test_id: str) -> tuple[str, str]:
    path, _, name = test_id.partition("::")
    area = Path(path).stem.removeprefix("test_hostile_")
    name = name.removeprefix("test_")
    m = re.fullmatch(r"(\w+?)\[(.+)\]", name, re.S)
    if m:
        name = m.group(2) if m.group(1).startswith("hostile_") else f"{m.group(1)} [{m.group(2)}]"
    return area, name.replace("_", " ")


def render(records: list[dict]) -> str:
    rows, seen = [], {}
    for r in records:
        area, name = _input_name(r["test"])
        key = (area, name)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            name = f"{name} ({seen[key]})"
        msg = _TMP.sub("<tmp>", r["stderr"]).replace("|", "\\|").replace("\n", " / ")
        msg = msg if len(msg) <= 170 else msg[:167] + "..."
        ok = "yes" if r.get("clean") else "**no**"
        rows.append(f"| {len(rows) + 1} | {area} | {name} | `{r['command']}` | {r['code']} | {ok} | {msg} |")
    clean = sum(1 for r in records if r.get("clean"))
    head = [
        f"Inputs tried through the CLI: **{len(records)}**; handled cleanly (expected exit code, one "
        f"`error:` line with the expected words, no traceback): **{clean}**.",
        "",
        "| # | area | hostile input | command | exit | clean | stderr (one line) |",
        "|---|---|---|---|---|---|---|",
    ]
    return "\n".join(head + rows)


def main(record: str, doc: str) -> None:
    records = [json.loads(ln) for ln in Path(record).read_text().splitlines() if ln.strip()]
    d = Path(doc)
    text = d.read_text()
    a, b = text.index(START) + len(START), text.index(END)
    d.write_text(text[:a] + "\n" + render(records) + "\n" + text[b:])
    print(f"{len(records)} inputs, {sum(1 for r in records if r.get('clean'))} clean -> {doc}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
