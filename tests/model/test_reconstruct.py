"""Layer-wise least-squares reconstruction (issue 15, item 4): every sublayer's calibration error drops,
the reported errors are what an independent pass measures, held-out logits move toward the dense model,
and zero-unit sublayers re-fit their bias only; on every registered architecture's tiny model."""

from __future__ import annotations

import pytest
import torch

from cahp_edge.arch import get_adapter
from cahp_edge.model.reconstruct import _collect, _dense_targets, _sublayers, reconstruct
from cahp_edge.model.reshape import reshape
from tests.helpers.export_helpers import FAMILIES
from tests.helpers.tiny import tiny_batch, tiny_model
from tests.model.test_neuron_plans import neuron_plan


@pytest.mark.parametrize("family", FAMILIES)
def test_reconstruction_lowers_every_sublayer_error_and_moves_toward_dense(family):
    torch.manual_seed(0)
    dense = tiny_model(family, num_labels=3).eval()
    ad = get_adapter(dense.config)
    plan = neuron_plan(dense)
    pruned = reshape(dense, plan, ad)
    calib = [tiny_batch(dense, batch=16, seq=20, seed=s) for s in range(4)]
    held = tiny_batch(dense, batch=16, seq=20, seed=99)
    with torch.no_grad():
        ref, before = dense(**held).logits, pruned(**held).logits
    rep = reconstruct(pruned, dense, ad, calib)
    with torch.no_grad():
        after = pruned(**held).logits
    L = ad.num_layers(dense.config)
    order = [(i, s) for i in range(L) for s in ("attention", "ffn")]
    assert [(f.layer, f.sublayer) for f in rep.fits] == order
    hs = ad.head_size(dense.config)
    assert [f.units for f in rep.fits[0::2]] == [h * hs for h in plan.heads_per_layer]
    assert [f.units for f in rep.fits[1::2]] == plan.neurons_per_layer  # incl. the zero-neuron layer
    for f in rep.fits:
        assert f.error_after < f.error_before and not f.kept_old, f  # each one, zero-unit ones (bias) too
    assert sum(f.error_after for f in rep.fits) < 0.5 * sum(f.error_before for f in rep.fits)
    assert rep.positions == sum(int(b["attention_mask"].sum()) for b in calib)
    assert (after - ref).abs().mean() < 0.5 * (before - ref).abs().mean()  # held-out rows, not calibration

    # the last sublayer's reported error is what a fresh pass over the re-fit model measures
    targets = _dense_targets(dense, ad, calib)
    _, proj, norm = _sublayers(ad, ad.layers(pruned)[-1])[1]
    _, _, err, n = _collect(pruned, proj, norm, calib, targets, 2 * L - 1)
    d = ad.hidden_size(dense.config)
    assert err / n / d == pytest.approx(rep.fits[-1].error_after, rel=1e-4)


def test_dense_model_reconstructs_to_itself():
    dense = tiny_model("bert", num_labels=2).eval()
    ad = get_adapter(dense.config)
    copy = reshape(dense, neuron_plan(dense).keep_all(ad.heads_per_layer(dense)), ad)
    rep = reconstruct(copy, dense, ad, [tiny_batch(dense, batch=8, seq=10, seed=1)])
    assert all(f.error_before < 1e-10 for f in rep.fits)
    held = tiny_batch(dense, batch=8, seq=10, seed=2)
    with torch.no_grad():
        assert torch.allclose(copy(**held).logits, dense(**held).logits, atol=1e-5)
