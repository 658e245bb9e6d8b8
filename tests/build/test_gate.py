"""The gate before pruning: a dense model no better than the majority class stops the build (one line,
exit 1, no release), unless --allow-weak-model; `finetune` warns about such a model."""

from __future__ import annotations

import math

import pytest

from cahp_edge.model.sanity import judge
from tests.helpers.build_tiny import make_checkpoint, make_data

pytestmark = pytest.mark.slow  # builds a tiny model end to end (the judge tests alone are instant)


@pytest.mark.parametrize(
    ("acc", "loss", "labels", "n_labels", "weak_because"),
    [
        (0.50, 0.69, [0, 1] * 10, 2, "not above the majority class"),  # untrained on balanced data
        (0.60, 0.40, [0] * 12 + [1] * 8, 2, "not above the majority class"),  # = always answering 0
        (0.53, 0.68, [0, 1] * 10, 2, "near ln(2)"),  # barely above, loss of an untrained head
        (0.22, 1.58, [0, 1, 2, 3, 4] * 4, 5, "near ln(5)"),
        (0.549, 1.482, [0] * 146 + [1] * 131, 2, "mean loss 1.482 is above ln(2)"),  # overfitted (RTE)
        (0.90, 0.30, [0, 1] * 10, 2, None),  # learned
        (0.70, 0.68, [0, 1] * 10, 2, None),  # low confidence but clearly above the majority class
    ],
)
def test_judge(acc, loss, labels, n_labels, weak_because):
    h = judge(acc, loss, labels, n_labels)
    assert h.chance == pytest.approx(1 / n_labels) and h.ln_labels == pytest.approx(math.log(n_labels))
    assert h.majority == pytest.approx(max(labels.count(c) for c in set(labels)) / len(labels))
    if weak_because is None:
        assert not h.weak and h.reason is None
    else:
        assert h.weak and weak_because in h.reason


def test_untrained_model_stops_the_build_unless_allowed(tmp_path, capsys):
    from cahp_edge.cli import main

    make_checkpoint(tmp_path / "ck")  # random weights: one class for everything
    make_data(tmp_path / "data")
    cfg = tmp_path / "fast.toml"
    cfg.write_text('method = "magnitude"\nheads = 6\ncalib_size = 8\nselect_size = 8\n'
                   'recover_epochs = 0\ncompare_dense = false\nmax_length = 32\n'
                   '[benchmark]\nruns = 3\nwarmup = 0\nseq_len = 16\n')
    argv = ["build", "-q", "--model", str(tmp_path / "ck"), "--data", str(tmp_path / "data" / "train.tsv"),
            "--eval", str(tmp_path / "data" / "dev.tsv"), "--target", "host", "--out", str(tmp_path / "dist"),
            "--config", str(cfg)]
    capsys.readouterr()  # the checkpoint's own save progress
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert e.value.code == 1 and len(err) == 1, err
    assert "not worth pruning" in err[0] and "majority class" in err[0] and "--allow-weak-model" in err[0]
    assert not (tmp_path / "dist" / "host").exists() and not (tmp_path / "dist" / "host.tar.gz").exists()

    # allowed: the same build goes through (the check stage is cached, its verdict recorded)
    assert main([*argv, "--allow-weak-model", "--json"]) == 0
    assert (tmp_path / "dist" / "host" / "metrics.json").is_file()
