"""The method tables: names, weights of protocol.md, stages, overrides and errors."""
from __future__ import annotations

import pytest

from rkd.losses.terms import LOSS_TERMS
from rkd.methods import METHODS, TASKS, Method, Stage, get_method, methods_for_task
from rkd.registry import UnknownNameError

EXPECTED_NAMES = {
    "Triplet", "FitNet", "Attention", "DarkRank", "RKD-D", "RKD-A", "RKD-DA", "HKD", "RRD",
    "HKD+RKD-DA", "FitNet+RKD-DA", "Attention+RKD-DA", "RRD+HKD", "Baseline", "Prototypical",
}


def all_methods():
    return [(name, task) for task in TASKS for name in methods_for_task(task)]


def final_terms(name, task):
    return dict(get_method(name, task).stages[-1].terms)


def test_registered_names_are_exactly_the_papers():
    assert set(METHODS.names()) == EXPECTED_NAMES


def test_tasks_get_their_methods():
    assert set(methods_for_task("metric")) == {
        "Baseline", "Triplet", "FitNet", "Attention", "DarkRank", "RKD-D", "RKD-A", "RKD-DA", "RRD"}
    assert set(methods_for_task("classification")) == {
        "Baseline", "RKD-D", "RKD-A", "RKD-DA", "HKD", "FitNet", "Attention", "RRD",
        "HKD+RKD-DA", "FitNet+RKD-DA", "Attention+RKD-DA", "RRD+HKD"}
    assert set(methods_for_task("fewshot")) == {
        "Baseline", "Prototypical", "RKD-D", "RKD-A", "RKD-DA", "Attention", "FitNet"}


@pytest.mark.parametrize("name, task", all_methods())
def test_every_method_is_well_formed(name, task):
    method = get_method(name, task)
    assert isinstance(method, Method) and method.name == name and method.task == task
    assert abs(sum(stage.fraction for stage in method.stages) - 1.0) < 1e-12
    for term in method.term_names:
        assert term in LOSS_TERMS
    for stage in method.stages:
        assert all(weight > 0 for weight in stage.terms.values())


@pytest.mark.parametrize("name", methods_for_task("classification"))
def test_classification_always_adds_cross_entropy(name):
    assert final_terms(name, "classification")["cross_entropy"] == 1.0


@pytest.mark.parametrize("name", methods_for_task("fewshot"))
def test_fewshot_always_adds_prototypical(name):
    assert final_terms(name, "fewshot")["prototypical"] == 1.0


@pytest.mark.parametrize("name, task, expected", [
    ("RKD-D", "metric", {"rkd_distance": 1}),
    ("RKD-A", "metric", {"rkd_angle": 2}),
    ("RKD-DA", "metric", {"rkd_distance": 1, "rkd_angle": 2}),
    ("Attention", "metric", {"triplet": 1, "attention": 50}),
    ("DarkRank", "metric", {"triplet": 1, "darkrank": 1}),
    ("Triplet", "metric", {"triplet": 1}),
    ("RRD", "metric", {"rrd": 1}),
    ("RKD-D", "classification", {"cross_entropy": 1, "rkd_distance": 25}),
    ("RKD-A", "classification", {"cross_entropy": 1, "rkd_angle": 50}),
    ("RKD-DA", "classification", {"cross_entropy": 1, "rkd_distance": 25, "rkd_angle": 50}),
    ("HKD", "classification", {"cross_entropy": 1, "hkd": 1}),
    ("Attention", "classification", {"cross_entropy": 1, "attention": 50}),
    ("HKD+RKD-DA", "classification", {"cross_entropy": 1, "hkd": 1, "rkd_distance": 25, "rkd_angle": 50}),
    ("Attention+RKD-DA", "classification",
     {"cross_entropy": 1, "attention": 50, "rkd_distance": 25, "rkd_angle": 50}),
    ("RRD", "classification", {"cross_entropy": 1, "rrd": 1}),
    ("RRD+HKD", "classification", {"cross_entropy": 1, "rrd": 1, "hkd": 1}),
    ("RKD-D", "fewshot", {"prototypical": 1, "rkd_distance": 50}),
    ("RKD-A", "fewshot", {"prototypical": 1, "rkd_angle": 100}),
    ("RKD-DA", "fewshot", {"prototypical": 1, "rkd_distance": 25, "rkd_angle": 50}),
    ("Attention", "fewshot", {"prototypical": 1, "attention": 10}),
    ("Baseline", "fewshot", {"prototypical": 1}),
    ("Baseline", "classification", {"cross_entropy": 1}),
    ("Baseline", "metric", {"triplet": 1}),
])
def test_weights_follow_the_protocol(name, task, expected):
    method = get_method(name, task)
    assert len(method.stages) == 1
    assert dict(method.stages[0].terms) == {k: float(v) for k, v in expected.items()}


@pytest.mark.parametrize("name, task, hints, then", [
    ("FitNet", "metric", ("block2", "block3", "block4", "embedding"), {"triplet": 1.0}),
    ("FitNet", "classification", ("block2", "block3", "block4"), {"cross_entropy": 1.0}),
    ("FitNet", "fewshot", ("embedding",), {"prototypical": 1.0}),
    ("FitNet+RKD-DA", "classification", ("block2", "block3", "block4"),
     {"cross_entropy": 1.0, "rkd_distance": 25.0, "rkd_angle": 50.0}),
])
def test_fitnet_has_a_hint_stage_then_the_task(name, task, hints, then):
    method = get_method(name, task)
    assert [dict(s.terms) for s in method.stages] == [{"fitnet": 1.0}, then]
    assert tuple(method.options_for("fitnet")["hints"]) == hints


def test_classification_rkd_normalises_pooled_features_and_fewshot_attention_uses_last_block():
    assert get_method("RKD-DA", "classification").options_for("rkd_angle") == {"normalize": True}
    assert get_method("RKD-DA", "metric").options_for("rkd_angle") == {}
    assert tuple(get_method("Attention", "fewshot").options_for("attention")["blocks"]) == ("block4",)


def test_stage_at_splits_the_steps():
    method = get_method("FitNet", "metric")
    assert [method.stage_at(step, 10) for step in range(12)] == [0] * 5 + [1] * 7
    three = Method("x", (Stage("a", {"triplet": 1}, 0.2), Stage("b", {"triplet": 1}, 0.3),
                         Stage("c", {"triplet": 1}, 0.5)))
    assert [three.stage_at(step, 10) for step in range(10)] == [0, 0, 1, 1, 1, 2, 2, 2, 2, 2]
    assert get_method("RKD-DA").stage_at(7, 10) == 0
    with pytest.raises(ValueError):
        method.stage_at(-1, 10)


def test_weight_overrides():
    method = get_method("RKD-DA", "classification", rkd_angle=10, cross_entropy=0.5)
    assert dict(method.stages[0].terms) == {"cross_entropy": 0.5, "rkd_distance": 25.0, "rkd_angle": 10.0}
    dropped = get_method("RKD-DA", "classification", rkd_angle=0)
    assert dict(dropped.stages[0].terms) == {"cross_entropy": 1.0, "rkd_distance": 25.0}
    assert "rkd_angle" not in dropped.term_options
    # overrides never leak into the table
    assert get_method("RKD-DA", "classification").stages[0].terms["rkd_angle"] == 50.0
    with pytest.raises(ValueError, match="rkd_angle"):
        get_method("RKD-D", "metric", rkd_angle=1)
    with pytest.raises(ValueError, match="no loss terms"):
        get_method("RKD-A", "metric", rkd_angle=0)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(UnknownNameError, match="RKD-DA") as info:
        get_method("RKD-XYZ", "metric")
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    with pytest.raises(UnknownNameError, match="valid methods for 'metric'.*DarkRank"):
        get_method("HKD", "metric")
    with pytest.raises(UnknownNameError, match="fewshot"):
        get_method("RKD-DA", "segmentation")
    with pytest.raises(UnknownNameError, match="Prototypical"):
        get_method("DarkRank", "fewshot")


def test_with_term_options_and_validation():
    method = get_method("RRD", "classification").with_term_options("rrd", queue_size=64)
    assert method.options_for("rrd") == {"queue_size": 64}
    assert get_method("RRD", "classification").options_for("rrd") == {}
    with pytest.raises(ValueError, match="no term"):
        method.with_term_options("hkd", temperature=2)
    with pytest.raises(ValueError, match="sum to 1"):
        Method("bad", (Stage("a", {"triplet": 1}, 0.5),))
    with pytest.raises(ValueError, match="no loss terms"):
        Stage("empty", {})
