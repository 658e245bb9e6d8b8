"""JSD values, pairwise accumulation, and padding invariance of the head signatures."""

from __future__ import annotations

import math

import pytest
import torch

from cahp_edge.prune.batches import Batches
from cahp_edge.prune.distance import JSDAccumulator, jsd, metric, pairwise_jsd_sum, summary
from cahp_edge.prune.signatures import collect, real_rows
from tests.helpers.tiny import tiny_batch, tiny_model

torch.set_num_threads(1)  # tiny models: threading overhead dominates on a shared 2-core box


def test_jsd_known_values():
    p = torch.tensor([0.2, 0.3, 0.5])
    assert float(jsd(p, p)) == 0.0
    a, b = torch.tensor([0.5, 0.5, 0.0, 0.0]), torch.tensor([0.0, 0.0, 0.25, 0.75])
    assert float(jsd(a, b)) == pytest.approx(math.log(2), abs=1e-6)
    # symmetric, and matches the KL definition
    q = torch.tensor([0.6, 0.1, 0.3])
    m = (p + q) / 2
    kl = lambda x, y: float((x * (x / y).log()).sum())  # noqa: E731
    assert float(jsd(p, q)) == pytest.approx(0.5 * kl(p, m) + 0.5 * kl(q, m), abs=1e-6)
    assert float(jsd(p, q)) == pytest.approx(float(jsd(q, p)), abs=1e-7)


def test_pairwise_matches_brute_force_and_blocking():
    g = torch.Generator().manual_seed(0)
    rows = torch.rand(7, 11, 5, generator=g) ** 3
    rows[:, :, 4] = 0  # a padded key holds exact zeros
    rows = rows / rows.sum(-1, keepdim=True)
    rows[3] = rows[1]  # two identical heads
    got = pairwise_jsd_sum(rows)
    brute = torch.zeros(7, 7, dtype=torch.float64)
    for i in range(7):
        for j in range(7):
            brute[i, j] = jsd(rows[i], rows[j]).double().sum()
    assert torch.allclose(got, brute, atol=1e-5)
    assert float(got[1, 3]) == 0.0 and torch.all(got.diagonal() == 0)
    # tiny blocks (one pair-row at a time) give the same sums
    assert torch.allclose(pairwise_jsd_sum(rows, block_elems=5), got, atol=1e-9)


def test_accumulator_mean_and_metric():
    rows = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]], [[1.0, 0.0]]])  # (N=3, R=1, T=2)
    acc = JSDAccumulator(3)
    acc.add(rows)
    acc.add(rows)
    d = acc.mean()
    assert acc.rows == 2
    assert float(d[0, 1]) == pytest.approx(math.log(2), abs=1e-6) and float(d[0, 2]) == 0.0
    assert float(metric(d)[0, 1]) == pytest.approx(math.sqrt(math.log(2)), abs=1e-6)
    s = summary(d.float(), [3])
    assert s["max"] == pytest.approx(math.log(2), abs=1e-6)


def test_real_rows_drops_padding_queries_and_keys():
    att = torch.softmax(torch.randn(2, 3, 4, 4), -1)  # (B, H, T, T)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    rows = real_rows([att], mask)
    assert rows.shape == (3, 5, 4)  # 3 + 2 real query rows
    assert torch.all(rows[:, 3:, 2:] == 0) and torch.all(rows[:, :3, 3] == 0)
    assert torch.allclose(rows.sum(-1), torch.ones(3, 5))


def test_real_rows_column_selection_equals_slicing_first():
    # collect() passes the all-padding columns to drop instead of slicing every layer beforehand
    g = torch.Generator().manual_seed(0)
    atts = [torch.softmax(torch.randn(2, h, 5, 5, generator=g), -1) for h in (3, 0, 2)]  # a zero-head layer
    mask = torch.tensor([[0, 1, 1, 0, 0], [0, 1, 1, 1, 0]])  # left and right padding
    cols = mask.bool().any(0)
    got = real_rows(atts, mask, cols)
    want = real_rows([a[:, :, cols][..., cols] for a in atts], mask[:, cols])
    assert got.shape == (5, 5, 3) and torch.equal(got, want)


def _padded(batch: dict, extra: int, pad_id: int) -> dict:
    b, _t = batch["input_ids"].shape
    ids = torch.cat([batch["input_ids"], torch.full((b, extra), pad_id)], 1)
    mask = torch.cat([batch["attention_mask"], torch.zeros(b, extra, dtype=torch.long)], 1)
    return {"input_ids": ids, "attention_mask": mask, "labels": batch["labels"]}


@pytest.mark.parametrize("family", ["bert", "roberta", "distilbert"])
def test_padding_invariance(family):
    torch.manual_seed(0)
    m = tiny_model(family)
    b = tiny_batch(m, batch=4, seq=12)
    b["labels"] = torch.tensor([0, 1, 2, 0])
    pad = getattr(m.config, "pad_token_id", 0) or 0
    s1 = collect(m, Batches([b]))
    s2 = collect(m, Batches([_padded(b, 9, pad)]))
    # the same examples split into two batches with different padding
    halves = [{k: v[:2] for k, v in b.items()}, _padded({k: v[2:] for k, v in b.items()}, 3, pad)]
    s3 = collect(m, Batches(halves))
    assert s1.rows == s2.rows == s3.rows == int(b["attention_mask"].sum())
    assert torch.allclose(s1.mean_jsd, s2.mean_jsd, atol=1e-6)
    assert torch.allclose(s1.mean_jsd, s3.mean_jsd, atol=1e-6)
    assert torch.allclose(s1.mean_entropy, s2.mean_entropy, atol=1e-6)
    n = sum(s1.heads_per_layer)
    assert s1.mean_jsd.shape == (n, n) and float(s1.mean_jsd.max()) <= math.log(2) + 1e-6
