import os
import pickle

import pytest
import torch

from rkd.experiments import ParameterError, notebook_parameters
from rkd.experiments.base import Experiment, Parameter
from rkd.paper import PAPER_TABLES, paper_table
from rkd.registry import Registry, UnknownNameError
from rkd.runtime import UnsafeCheckpointError, atomic_torch_save, atomic_write, safe_torch_load


def test_registry_lists_valid_names_on_unknown():
    r = Registry("widget")
    r.register("a", 1)

    @r.register("b")
    def b():
        return 2

    assert r.get("b") is b
    with pytest.raises(UnknownNameError, match=r"unknown widget 'c'; valid names: a, b"):
        r.get("c")
    with pytest.raises(ValueError, match="already registered"):
        r.register("a", 3)


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "result.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as handle:
            handle.write("half-writ")
            raise RuntimeError("crash in the middle")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["result.txt"], "the temporary file must be removed"


def test_atomic_write_creates_files_as_the_umask_says_not_private(tmp_path):
    previous = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "shared.jsonl", "w") as handle:
            handle.write("{}\n")
    finally:
        os.umask(previous)
    assert (tmp_path / "shared.jsonl").stat().st_mode & 0o777 == 0o644
    assert os.listdir(tmp_path) == ["shared.jsonl"]


def test_safe_load_round_trip_and_refusal(tmp_path):
    good = tmp_path / "good.pt"
    atomic_torch_save({"w": torch.arange(3), "step": 4, "cfg": {"lr": 0.1}}, good)
    state = safe_torch_load(good)
    assert state["step"] == 4 and torch.equal(state["w"], torch.arange(3))

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo should-never-run",))

    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as handle:
        torch.save({"w": torch.zeros(1), "x": Payload()}, handle)
    with pytest.raises(UnsafeCheckpointError, match="refusing to load"):
        safe_torch_load(evil)

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:40])
    with pytest.raises((RuntimeError, pickle.UnpicklingError)):
        safe_torch_load(truncated)
    with pytest.raises(FileNotFoundError):
        safe_torch_load(tmp_path / "missing.pt")


class _Experiment(Experiment):
    """An experiment with one parameter of each kind a notebook passes: a float and a
    tuple of ints (the common ones, scale, seeds, ..., are every experiment's)."""

    name = "parameters"
    title = "A test experiment"
    presets = {}
    parameters = {"lr": Parameter(float, 0.1), "embedding_dims": Parameter(tuple[int, ...] | None, None)}


def test_notebook_parameters_accepts_and_coerces():
    ns = {"scale": "ci", "seeds": [3], "lr": 1, "embedding_dims": [16, 32], "In": [], "_i1": "x",
          "pd": pytest, "notebook_parameters": notebook_parameters}
    params = notebook_parameters(ns, _Experiment())
    assert params == {"scale": "ci", "seeds": (3,), "lr": 1.0, "embedding_dims": (16, 32)}
    assert isinstance(params["lr"], float)
    assert notebook_parameters({"seeds": None, "embedding_dims": None}, _Experiment()) == {
        "seeds": None, "embedding_dims": None}


def test_notebook_parameters_refuses_unknown_and_ill_typed():
    with pytest.raises(ParameterError, match=r"unknown notebook parameter\(s\) \['sede'\]; A test experiment takes: "
                                             r"scale, data_root, device, seeds, .*lr, embedding_dims"):
        notebook_parameters({"sede": 1}, _Experiment())
    with pytest.raises(ParameterError, match="seeds='1' has type str"):
        notebook_parameters({"seeds": "1"}, _Experiment())
    with pytest.raises(ParameterError, match=r"seeds=\[True\] has type list"):
        notebook_parameters({"seeds": [True]}, _Experiment())
    with pytest.raises(ParameterError, match="lr=True has type bool; expected float"):
        notebook_parameters({"lr": True}, _Experiment())
    with pytest.raises(ParameterError, match="embedding_dims"):
        notebook_parameters({"embedding_dims": ["a"]}, _Experiment())


def test_paper_tables_are_the_published_numbers():
    t1 = paper_table("table1")
    assert len(t1) == 82
    row = t1[(t1.dataset == "Cars196") & (t1.embedding_dim == 128) & (t1.method == "RKD-DA")
             & (t1.l2_normalize == "no")]
    assert row.recall_at_1.item() == 82.5
    for name in PAPER_TABLES:
        assert len(paper_table(name)) > 0
