"""The plan format with FFN neurons (cahp-plan/2, issue 15): round trip, and head-only plans unchanged."""

from __future__ import annotations

import json

import pytest

from cahp_edge.errors import PlanError
from cahp_edge.plan import FORMAT, FORMAT_NEURONS, HeadPlan


def test_head_only_plan_is_still_format_1_byte_for_byte(tmp_path):
    """A plan without neurons writes exactly what the head-only format wrote: readers of /1 keep working."""
    plan = HeadPlan((4, 4, 4), ((0, 1), (), (3,)), {"method": "cahp", "k_star": 3})
    d = plan.to_dict()
    assert d == {"format": FORMAT, "num_heads": [4, 4, 4], "kept": [[0, 1], [], [3]],
                 "heads_per_layer": [2, 0, 1], "total_kept": 3, "method": "cahp", "k_star": 3}
    back = HeadPlan.load(plan.save(tmp_path / "plan.json"))
    assert back == plan and not back.prunes_neurons and back.neurons_per_layer is None
    assert back.to_dict() == d


def test_neuron_plan_round_trips_with_a_zero_neuron_layer(tmp_path):
    plan = HeadPlan((4, 4, 4), ((0,), (1, 2), ()), {"method": "x"}, (8, 8, 8), ((0, 3, 7), (), (5,)))
    d = plan.to_dict()
    assert d["format"] == FORMAT_NEURONS and d["neurons_per_layer"] == [3, 0, 1]
    back = HeadPlan.load(plan.save(tmp_path / "plan.json"))
    assert back == plan and back.kept_neurons == ((0, 3, 7), (), (5,)) and back.num_neurons == (8, 8, 8)
    assert back.meta == {"method": "x", "heads_per_layer": [1, 2, 0], "total_kept": 3}
    assert json.loads((tmp_path / "plan.json").read_text())["kept_neurons"] == [[0, 3, 7], [], [5]]
    HeadPlan.load(tmp_path / "plan.json").check_model([4, 4, 4], [8, 8, 8])
    with pytest.raises(PlanError, match=r"FFN widths \[8, 8, 8\], model has \[8, 9, 8\]"):
        back.check_model([4, 4, 4], [8, 9, 8])


def test_old_plan_files_without_a_format_field_load():
    plan = HeadPlan.from_dict({"num_heads": [2, 2], "kept": [[1, 0], [1]], "method": "michel"})
    assert plan.kept == ((0, 1), (1,)) and plan.meta == {"method": "michel"} and not plan.prunes_neurons


@pytest.mark.parametrize("widths, kept, msg", [
    ((8, 8), None, "one of 'num_neurons' and 'kept_neurons'"),
    ((8,), ((0,),), "1 FFN widths"),
    ((8, 8), ((0,), (8,)), r"FFN neuron\(s\) \[8\] in layer 1"),
    ((8, 8), ((1, 1), ()), "twice in layer 0"),
])
def test_inconsistent_neuron_plans_are_refused(widths, kept, msg):
    with pytest.raises(PlanError, match=msg):
        HeadPlan((2, 2), ((0,), (1,)), {}, widths, kept)
