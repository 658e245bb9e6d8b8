"""The one-line stage summaries say the same as the model card, report and metrics.json."""

from __future__ import annotations

from cahp_edge.build.pipeline import _package_line, _prune_line
from cahp_edge.release.assemble import _word


def test_prune_line_names_the_fits_knee_and_the_kept_count():
    s = {"heads_before": 72, "heads_after": 32, "budget_source": "knee", "k_star": 32, "knee": 25,
         "degree": 3}
    assert _prune_line(s) == "72 -> 32 heads, knee of the degree-3 fit at k=25, kept 32 (next grid point)"
    assert _prune_line({**s, "knee": 32}) == "72 -> 32 heads, knee at k=32 (degree 3)"
    assert _prune_line({**s, "budget_source": "--heads/--keep-ratio"}) == "72 -> 32 heads, fixed budget"


def test_prune_line_says_when_the_guard_moved_the_knee_and_when_a_rival_scores_higher():
    from cahp_edge.plots import better_rival, guard_text

    knee = {"k": 36, "k_kneedle": 23, "guarded_by_max_drop": True, "max_drop_points": 3.0}
    rival = {"method": "uniform", "heads": 36, "selection_accuracy": 0.62, "chosen_accuracy": 0.6,
             "only_chosen": 4, "only_rival": 14, "mcnemar_p": 0.031}
    s = {"heads_before": 72, "heads_after": 36, "budget_source": "knee", "k_star": 36, "knee": 36,
         "degree": 3,
         "drop": {"heads": 36, "dense": 0.629, "kept": 0.6, "drop_points": 2.9},
         "guard": guard_text(knee), "better_rival": better_rival({"method": "cahp", "rivals": [rival]})}
    assert _prune_line(s) == (
        "72 -> 36 heads, knee at k=36 (degree 3) (Kneedle chose 23, moved up to 36 by the 3-point --max-drop "
        "guard); selection accuracy 60.0% vs dense 62.9% (-2.9 pt before recovery) (note: uniform scores "
        "62.0% vs cahp 60.0% on the selection split at 36 heads (+2.0 pt, McNemar p = 0.031 on 18 differing "
        "examples); to ship its plan, pass --method uniform)")
    assert guard_text({**knee, "guarded_by_max_drop": False}) == "" == guard_text(None)


def test_budget_words_match_the_verdict_status():
    incomplete = {"status": "incomplete", "failed": [], "skipped": ["p90_latency_ms"]}
    assert _word(incomplete) == "incomplete (not measured: p90_latency_ms)"
    assert _word({"status": "fail", "failed": ["size_mb"], "skipped": []}) == "FAIL (size_mb)"
    assert _word({"status": "pass", "failed": [], "skipped": []}) == "pass"
    summary = {"dir": "dist/x", "files": 11, "tarball": "dist/x.tar.gz", "budgets": _word(incomplete)}
    line = _package_line(summary)
    assert line.endswith("budgets incomplete (not measured: p90_latency_ms)")


def test_selection_on_the_fine_tuning_data_is_flagged(tmp_path):
    import json

    from cahp_edge.build.options import BuildOptions
    from cahp_edge.build.pipeline import _data_line
    from cahp_edge.build.stages import selects_on_finetuning_data

    model = tmp_path / "ck"
    model.mkdir()
    (tmp_path / "train.tsv").write_text("sentence\tlabel\na\tx\n")
    (model / "cahp_finetune.json").write_text(json.dumps({"train_data": str(tmp_path / "train.tsv")}))
    opts = BuildOptions.model_validate({"model": str(model), "data": str(tmp_path / "train.tsv")})
    assert selects_on_finetuning_data(opts, model)
    assert not selects_on_finetuning_data(opts.model_copy(update={"select": "held.tsv"}), model)
    assert not selects_on_finetuning_data(opts.model_copy(update={"data": "other.tsv"}), model)
    assert not selects_on_finetuning_data(opts, tmp_path)  # no finetune record: nothing to say
    s = {"calib": 8, "select": 16, "rows": 24}
    assert "warning" not in _data_line(s)
    assert "fine-tuned on" in _data_line({**s, "select_on_finetuning_data": True})
