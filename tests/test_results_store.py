"""The results store: a page reads its numbers from results/ instead of training, make
results writes them, make test's sample retrains whole chains and matches them bit for
bit, and a stale or missing record is reported."""
from __future__ import annotations

import json
import random
import sys
from dataclasses import replace

import cloudpickle
import pandas as pd
import pytest

import rkd.runs.training as training_module
from rkd.experiments.results import check, refresh, verify
from rkd.runs import prepare
from rkd.runs.executors import JobFailedError
from rkd.runs.results import ResultStore, same_measurements
from test_executors import Broken, Spread

cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture
def counted_fit(monkeypatch):
    calls = []
    real = training_module.fit

    def fit(*args, **kwargs):
        calls.append(kwargs.get("desc"))
        return real(*args, **kwargs)

    monkeypatch.setattr(training_module, "fit", fit)
    return calls


@pytest.fixture(scope="module")
def refreshed(tmp_path_factory):
    """``make results`` for the tiny experiment: its store, written by two processes."""
    results = tmp_path_factory.mktemp("results")
    refresh({"spread": Spread()}, jobs=2, work_dir=tmp_path_factory.mktemp("work"), results_dir=results,
            progress=False)
    return results


@pytest.mark.slow
def test_a_page_reads_its_numbers_from_the_store_and_trains_nothing(refreshed, tmp_path, counted_fit, monkeypatch):
    records = ResultStore(refreshed).records("spread")
    assert len(records) == 6 and all(r["steps"] and r["losses"]["step"] and r["machine"] for r in records.values())
    monkeypatch.setenv("RKD_RESULTS_DIR", str(refreshed))
    stored = Spread().run(cache_dir=str(tmp_path / "empty"), progress=False)
    assert counted_fit == [], "every number is in the store"
    evidence = stored.extra["evidence"]
    assert evidence["runs"] == 6 and evidence["store"] == "spread.jsonl" and evidence["machines"]
    assert evidence["core_hours"] == pytest.approx(sum(r["wall_seconds"] for r in records.values()) / 3600)
    assert evidence["example_key"] in {key[:12] for key in records}
    monkeypatch.setenv("RKD_RESULTS_DIR", "")
    trained = Spread().run(cache_dir=str(tmp_path / "trained"), progress=False)
    assert len(counted_fit) == 6
    pd.testing.assert_frame_equal(stored.rows, trained.rows)  # two worker processes gave one process's numbers


@pytest.mark.slow
def test_the_sample_matches_bit_for_bit_and_a_changed_number_or_plan_is_caught(refreshed, tmp_path):
    assert verify(2, "abc", experiments={"spread": Spread()}, results_dir=refreshed, progress=False) == []
    path = refreshed / "spread.jsonl"
    lines = path.read_text().splitlines()
    tampered = [json.loads(line) for line in lines]
    tampered[-1]["metrics"] = {k: {m: v + 1e-9 for m, v in values.items()}
                               for k, values in tampered[-1]["metrics"].items()}
    stale = {**tampered[0], "key": "0" * 64}
    changed = tmp_path / "changed"
    ResultStore(changed).write("spread", [*tampered[1:], stale])
    problems = verify(6, "abc", experiments={"spread": Spread()}, results_dir=changed, progress=False)
    assert any("stale record" in p for p in problems)
    assert any(f"{tampered[0]['run']} (seed {tampered[0]['seed']}) is planned but has no record" in p
               for p in problems)
    assert any("retrained differs from its record in ['metrics']" in p for p in problems)
    assert check({"spread": Spread()}, refreshed) == []


@pytest.mark.slow
def test_verified_models_are_kept_for_the_notebooks_that_run_next(refreshed, tmp_path, counted_fit, monkeypatch):
    kept = tmp_path / "kept"
    assert verify(6, "abc", experiments={"spread": Spread()}, results_dir=refreshed, progress=False,
                  into_cache=kept) == []
    monkeypatch.setenv("RKD_RESULTS_DIR", "")  # no store to read: what the kept models lack would train
    Spread().run(cache_dir=str(kept), progress=False)
    assert counted_fit == [], "every verified model is read from the kept store"


class DrawsFromTheStudent(Spread):
    """Spread whose page draws from its RKD-DA students' models, as Figure 4 draws from its pair's."""

    keep_models = ("RKD-DA",)


@pytest.mark.slow
def test_a_page_read_from_the_store_trains_only_its_last_seed_s_models_for_its_figures(refreshed, tmp_path,
                                                                                       counted_fit, monkeypatch):
    monkeypatch.setenv("RKD_RESULTS_DIR", str(refreshed))
    results = DrawsFromTheStudent().run(cache_dir=str(tmp_path / "empty"), progress=False)
    assert sorted(counted_fit) == sorted(["digits (scikit-learn): teacher (seed 1)",
                                          "digits (scikit-learn): RKD-DA (seed 1)"]), counted_fit
    assert list(results.models) == ["digits (scikit-learn)/RKD-DA"]


@pytest.mark.slow
def test_one_run_is_verified_by_its_key_as_the_page_prints_it(refreshed, tmp_path):
    records = ResultStore(refreshed).records("spread")
    key = next(iter(records))
    tampered = {k: ({**r, "steps": r["steps"] + 1} if k == key else r) for k, r in records.items()}
    changed = tmp_path / "changed"
    ResultStore(changed).write("spread", tampered.values())
    problems = verify(experiments={"spread": Spread()}, keys=[key[:12]], results_dir=changed, progress=False)
    assert len(problems) == 1 and "retrained differs from its record in ['steps']" in problems[0]
    with pytest.raises(SystemExit, match="no planned training run has a key starting with ffff"):
        verify(experiments={"spread": Spread()}, keys=["ffff"], results_dir=refreshed, progress=False)


class TwoScales(Spread):
    """Spread with a second scale, as the pages have ``ci`` and ``converged``."""

    presets = {**Spread.presets, "converged": replace(Spread.presets["ci"], scale="converged")}


def test_check_reads_a_scale_s_own_folder_and_with_written_only_the_pages_written(refreshed, tmp_path, monkeypatch):
    monkeypatch.setenv("RKD_RESULTS_DIR", str(tmp_path))
    both = {"spread": TwoScales()}
    assert check(both, scale="converged", written=True) == []  # nothing written yet: nothing to hold against
    missing = check(both, scale="converged")
    assert len(missing) == 6 and all("is planned but has no record; run `make results SCALE=converged`" in problem
                                     for problem in missing)
    records = list(ResultStore(refreshed).records("spread").values())
    ResultStore(tmp_path / "converged").write("spread", [*records, {**records[0], "key": "0" * 64}])
    assert check(both, scale="ci", written=True) == []  # results/ itself holds no page
    problems = check(both, scale="converged", written=True)
    assert len(problems) == 1 and "stale record" in problems[0]


def test_same_measurements_names_the_fields_that_differ():
    record = {"metrics": {"t": {"recall_at_1": 50.0}}, "history": [], "losses": {"step": [1]}, "steps": 1,
              "episodes": {}, "wall_seconds": 1.0, "machine": "x"}
    assert same_measurements(record, {**record, "wall_seconds": 9.0, "machine": "y"}) == []
    assert same_measurements(record, {**record, "steps": 2, "losses": {"step": [2]}}) == ["losses", "steps"]
    nan = {**record, "metrics": {"t": {"recall_at_1": float("nan")}}}
    assert same_measurements(nan, json.loads(json.dumps(nan))) == []


def test_the_box_names_the_scale_s_store_and_verify_command_and_none_at_paper_scale():
    from rkd.report.page import evidence_sentence

    evidence = {"runs": 3, "core_hours": 0.5, "machines": ["a CPU"], "dates": ["2026-12-06"],
                "store": "figure3.jsonl", "example_key": "3f2a9c0d1e2b"}
    ci, converged = evidence_sentence("figure3", evidence), evidence_sentence("figure3", evidence, "converged")
    assert "results/figure3.jsonl" in ci and "verify figure3 --key 3f2a9c0d1e2b</code>" in ci
    assert "results/converged/figure3.jsonl" in converged and "--key 3f2a9c0d1e2b --scale converged" in converged
    paper = evidence_sentence("figure3", {**evidence, "store": None}, "paper")
    assert "trained when the page was executed" in paper and "verify" not in paper


def _chains(costs):
    """Pages of chain ends (strings) and their recorded seconds; every chain shares the trunk "t" (100 s)."""
    ends = {page: list(chains) for page, chains in costs.items()}
    return ends, lambda page, end: {"t": 100.0, end: costs[page][end]}


def test_a_budgeted_sample_stays_within_it_and_still_spreads_and_fills():
    from rkd.experiments.results import _sample

    costs = {"cheap": {f"c{i}": 10.0 for i in range(20)}, "dear": {"long": 1000.0, "short": 50.0, "mid": 200.0}}
    for seed in range(30):
        ends, recorded = _chains(costs)
        chosen = _sample(ends, ["dear", "cheap"], 6, random.Random(seed), recorded, budget=400.0)
        spent = 100.0 + sum(costs[page][end] for page, end in chosen)
        assert len(chosen) == 6 and spent <= 400.0 and {page for page, _ in chosen} == {"dear", "cheap"}
        assert ("dear", "long") not in chosen
    # nothing fits any more: the cheapest chains left are taken, so the sample is still full
    ends, recorded = _chains(costs)
    chosen = _sample(ends, ["dear", "cheap"], 6, random.Random(0), recorded, budget=0.0)
    assert len(chosen) == 6 and ("dear", "long") not in chosen and ("dear", "mid") not in chosen
    # unbounded: any chain can be drawn, as many as asked
    drawn = set()
    for seed in range(30):
        ends, recorded = _chains(costs)
        drawn.update(_sample(ends, ["dear", "cheap"], 4, random.Random(seed), recorded))
    assert ("dear", "long") in drawn


@pytest.mark.slow
def test_pages_that_share_jobs_verify_together_in_one_pool(refreshed, tmp_path):
    both = tmp_path / "both"
    records = ResultStore(refreshed).records("spread").values()
    ResultStore(both).write("spread", records)
    ResultStore(both).write("again", records)  # the same plan under another page's name: every key shared
    pages = {"spread": Spread(), "again": Spread()}
    assert verify(4, "abc", experiments=pages, results_dir=both, progress=False) == []
    assert verify(4, "abc", experiments=pages, results_dir=both, progress=False, budget_minutes=0.0) == []


def _planned(experiment, cache):
    """The page's jobs and the model store a refresh with ``cache`` as its work folder trains into."""
    return prepare(experiment, cache_dir=str(cache), results_dir="", progress=False)


@pytest.mark.slow
def test_a_refresh_stopped_part_way_resumes_on_another_machine_from_the_kept_records(refreshed, tmp_path):
    full = ResultStore(refreshed).records("spread")
    call = _planned(Spread(), tmp_path / "work")
    # the first sitting finished seed 0's chain and seed 1's teacher, then its machine went away with its models
    kept = {job.key: full[job.key] for job in call.jobs if full[job.key]["seed"] == 0 or job.run.role == "teacher"}
    results = tmp_path / "results"
    ResultStore(results / "unfinished").write("spread", kept.values())
    refresh({"spread": Spread()}, jobs=2, work_dir=tmp_path / "work", results_dir=results, progress=False)
    # seed 1's students trained, and its teacher again, for its model (held against its kept record)
    trained = {job.key for job in call.jobs if call.session.store.get(job.key, job.config) is not None}
    assert trained == {job.key for job in call.jobs if full[job.key]["seed"] == 1}
    written = ResultStore(results).records("spread")
    assert list(written) == list(full) and all(same_measurements(full[key], written[key]) == [] for key in full)
    assert all(written[key] == record for key, record in kept.items())  # as kept: their machine, their date
    assert not (results / "unfinished").exists()


@pytest.mark.slow
def test_a_kept_record_this_machine_does_not_reproduce_stops_the_refresh(refreshed, tmp_path):
    full = ResultStore(refreshed).records("spread")
    call = _planned(Spread(), tmp_path / "work")
    teacher = next(job for job in call.jobs if job.run.role == "teacher" and full[job.key]["seed"] == 1)
    forged = {**full[teacher.key], "steps": full[teacher.key]["steps"] + 1}
    ResultStore(tmp_path / "results" / "unfinished").write("spread", [forged])
    with pytest.raises(RuntimeError, match=r"differs in \['steps'\](.|\n)*does not reproduce that one bit for bit"):
        refresh({"spread": Spread()}, jobs=1, work_dir=tmp_path / "work", results_dir=tmp_path / "results",
                progress=False)
    assert not (tmp_path / "results" / "spread.jsonl").exists()


@pytest.mark.slow
def test_each_job_s_record_is_kept_as_it_ends_so_a_failed_refresh_loses_none(tmp_path):
    results = tmp_path / "results"
    with pytest.raises(JobFailedError):  # Broken's students diverge; its teachers train
        refresh({"broken": Broken()}, jobs=2, work_dir=tmp_path / "work", results_dir=results, progress=False)
    teachers = {job.key for job in _planned(Broken(), tmp_path / "work").jobs if job.run.role == "teacher"}
    assert set(ResultStore(results / "unfinished").records("broken")) == teachers
    assert not (results / "broken.jsonl").exists()


def test_check_names_a_page_a_refresh_left_part_way(refreshed, tmp_path, monkeypatch, capsys):
    import rkd.experiments.results as results_module

    monkeypatch.setenv("RKD_RESULTS_DIR", str(tmp_path))
    monkeypatch.setattr(results_module, "_pages", lambda experiments, scale: {"spread": TwoScales()})
    records = list(ResultStore(refreshed).records("spread").values())[:2]
    ResultStore(tmp_path / "converged" / "unfinished").write("spread", records)
    assert results_module.main(["check", "--scale", "converged", "--written"]) == 0
    out = capsys.readouterr().out
    assert "converged: 0 page(s) written (none yet)" in out
    assert "converged: spread part-way, 2 of 6 planned run(s) kept in" in out
    assert "`make results SCALE=converged` resumes it" in out and "no planned run makes" not in out
    ResultStore(tmp_path / "converged" / "unfinished").write("spread", [*records, {**records[0], "key": "0" * 64}])
    assert results_module.main(["check", "--scale", "converged", "--written"]) == 0
    out = capsys.readouterr().out  # a record an older plan made is not counted as progress
    assert "spread part-way, 2 of 6 planned run(s) kept in" in out
    assert "1 more kept record(s) no planned run makes any more (the refresh ignores them)" in out
