"""FFN neurons as prunable units (issue 15): the soft neuron mask and physical neuron surgery agree on
every registered architecture's tiny model, uneven widths and a zero-neuron layer included."""

from __future__ import annotations

import pytest
import torch

from cahp_edge.arch import get_adapter
from cahp_edge.arch.families import ALL
from cahp_edge.model.mask import HeadMask, NeuronMask
from cahp_edge.model.reshape import reshape
from cahp_edge.plan import HeadPlan
from tests.helpers.tiny import TINY_CONFIGS, tiny_batch, tiny_model

FAMILIES = sorted({a.name for a in ALL} & set(TINY_CONFIGS))


def _keep_sets(widths: list[int], seed: int) -> list[list[int]]:
    """Uneven kept neurons: layer 0 keeps a random half, layer 1 none, later layers random counts."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, w in enumerate(widths):
        n = w // 2 if i == 0 else 0 if i == 1 else int(torch.randint(1, w, (1,), generator=g))
        out.append(sorted(torch.randperm(w, generator=g)[:n].tolist()))
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_masked_and_physical_neurons_agree(family):
    torch.manual_seed(0)
    m = tiny_model(family, num_labels=3).eval()
    ad = get_adapter(m.config)
    widths = ad.neurons_per_layer(m)
    keep = _keep_sets(widths, seed=1)
    batch = tiny_batch(m, batch=4, seq=10, seed=2)
    values = torch.zeros(len(widths), max(widths))
    for i, k in enumerate(keep):
        values[i, k] = 1.0
    with torch.no_grad(), NeuronMask(m, ad, values):
        masked = m(**batch).logits  # (4, 3)
    dense = m(**batch).logits
    phys = reshape(m, HeadPlan.keep_all(ad.heads_per_layer(m)), ad)  # a copy to cut
    for layer, k in zip(ad.layers(phys), keep, strict=True):
        ad.keep_neurons(layer, k)
    assert ad.neurons_per_layer(phys) == [len(k) for k in keep]  # exact uneven widths, a zero layer
    assert ad.neurons_per_layer(m) == widths  # the source model untouched
    with torch.no_grad():
        cut = phys.eval()(**batch).logits
    assert cut.shape == masked.shape == (4, 3)
    assert torch.allclose(cut, masked, atol=1e-5), (cut - masked).abs().max()
    assert (cut - dense).abs().max() > 1e-4  # pruning changed the function: > 10x the parity tolerance


@pytest.mark.parametrize("family", FAMILIES)
def test_neuron_and_head_masks_compose_and_ones_change_nothing(family):
    m = tiny_model(family, num_labels=2).eval()
    ad = get_adapter(m.config)
    batch = tiny_batch(m, batch=3, seq=8, seed=3)
    with torch.no_grad():
        dense = m(**batch).logits
        with NeuronMask(m, ad), HeadMask(m, ad):
            ones = m(**batch).logits
    assert torch.equal(dense, ones)


def test_neuron_mask_is_differentiable_and_checks_its_shape():
    m = tiny_model("bert", num_labels=2)
    ad = get_adapter(m.config)
    batch = tiny_batch(m, batch=2, seq=6, seed=4)
    nm = NeuronMask(m, ad, requires_grad=True)
    with nm:
        m(**batch).logits.sum().backward()
    shape = (len(ad.layers(m)), max(ad.neurons_per_layer(m)))
    assert nm.values.grad is not None and nm.values.grad.shape == shape
    assert nm.values.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="layers, neurons"):
        NeuronMask(m, ad, torch.ones(1, 3))
