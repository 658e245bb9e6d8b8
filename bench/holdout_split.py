"""python bench/holdout_split.py --out /work/sst5-holdout   (not run by CI)

Held-out calibration protocol for bench/quality.py: split SST-5 train into a fine-tuning set and a
held-out set the fine-tuned model never sees, so that calibration (signatures, salience) and knee
selection score heads on unseen sentences, as users do when they calibrate on held-out data.

The held-out set is a stratified, seeded subset drawn with the project's own splitter
(``cahp_edge.data.make_splits``: its calibration subset, sized --holdout); the fine-tuning set is
everything else. Both are written as SST txt files (``__label__N<TAB>text``) outside the repository;
the script checks that the two files are disjoint, cover the input exactly and reload to the same rows.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO.parent / "shared" / "data" / "sst5" / "train.txt"


def _sst_lines(ds) -> list[str]:
    return [f"__label__{ds.label_names[y]}\t{t}\n" for t, y in zip(ds.texts, ds.labels, strict=True)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", default=str(TRAIN))
    ap.add_argument("--out", default="/work/sst5-holdout")
    ap.add_argument("--holdout", type=int, default=1100)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    from cahp_edge.data import load_dataset, make_splits
    from cahp_edge.fsutil import atomic_write_text

    ds = load_dataset(a.train)
    # calib = the stratified held-out set; select = all remaining rows (the fine-tuning set). The
    # eval argument is only there so make_splits does not look for rows left after both.
    sp = make_splits(ds, ds, calib_size=a.holdout, select_size=len(ds) - a.holdout, seed=a.seed)
    hold, fine = sp.calib, sp.select
    assert len(hold) + len(fine) == len(ds)
    lines_h, lines_f = _sst_lines(hold), _sst_lines(fine)
    assert Counter(lines_h) + Counter(lines_f) == Counter(_sst_lines(ds)), "split does not cover the input"

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "holdout.txt", "".join(lines_h))
    atomic_write_text(out / "finetune.txt", "".join(lines_f))
    for name, part in (("holdout", hold), ("finetune", fine)):
        back = load_dataset(str(out / f"{name}.txt"))
        assert (back.texts, [back.label_names[y] for y in back.labels]) == (
            part.texts,
            [part.label_names[y] for y in part.labels],
        ), f"{name}.txt does not reload to the same rows"
        print(f"{out / name}.txt: {len(part)} rows, labels {part.label_counts()}")
    overlap = set(hold.texts) & set(fine.texts)
    print(f"sentences in both files: {len(overlap)} (duplicates within SST-5 train itself)")


if __name__ == "__main__":
    main()
