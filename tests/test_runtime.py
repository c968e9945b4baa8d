import os
import pickle

import pytest
import torch

from rkd.experiments import ParameterError, notebook_parameters
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


def _run(scale: str = "ci", data_root: str | None = None, seed: int = 0, lr: float = 0.1,
         embedding_dims: tuple[int, ...] | None = None, progress: bool = True):
    pass


def test_notebook_parameters_accepts_and_coerces():
    ns = {"scale": "ci", "seed": 3, "lr": 1, "embedding_dims": [16, 32], "In": [], "_i1": "x",
          "pd": pytest, "notebook_parameters": notebook_parameters}
    params = notebook_parameters(ns, _run)
    assert params == {"scale": "ci", "seed": 3, "lr": 1.0, "embedding_dims": (16, 32)}
    assert isinstance(params["lr"], float)


def test_notebook_parameters_refuses_unknown_and_ill_typed():
    with pytest.raises(ParameterError, match=r"unknown notebook parameter\(s\) \['sede'\]"):
        notebook_parameters({"sede": 1}, _run)
    with pytest.raises(ParameterError, match="seed='1' has type str"):
        notebook_parameters({"seed": "1"}, _run)
    with pytest.raises(ParameterError, match="seed=True has type bool"):
        notebook_parameters({"seed": True}, _run)
    with pytest.raises(ParameterError, match="embedding_dims"):
        notebook_parameters({"embedding_dims": ["a"]}, _run)


def test_paper_tables_are_the_published_numbers():
    t1 = paper_table("table1")
    assert len(t1) == 82
    row = t1[(t1.dataset == "Cars196") & (t1.embedding_dim == 128) & (t1.method == "RKD-DA") & (t1.l2_normalize == "no")]
    assert row.recall_at_1.item() == 82.5
    for name in PAPER_TABLES:
        assert len(paper_table(name)) > 0
