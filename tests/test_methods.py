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


def test_only_stage_keeps_one_stage_and_its_options():
    method = get_method("FitNet", "metric")
    hint, task = method.only_stage(0), method.only_stage(1)
    assert [s.name for s in hint.stages] == ["hint"] and dict(hint.stages[0].terms) == {"fitnet": 1.0}
    assert hint.name == "FitNet (hint stage)" and set(hint.term_options) == {"fitnet"}
    assert dict(task.stages[0].terms) == {"triplet": 1.0} and task.term_options == {}
    assert get_method("RKD-DA").only_stage(0).stages == get_method("RKD-DA").stages
    with pytest.raises(ValueError, match="stages 0..1"):
        method.only_stage(2)


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
    with pytest.raises(ValueError, match="no stages"):
        Method("bad", ())
    with pytest.raises(ValueError, match="no loss terms"):
        Stage("empty", {})
