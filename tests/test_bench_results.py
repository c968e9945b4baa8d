"""The benchmarks' JSON figures (benchmarks/results/, read by the book's performance
page): the writer's schema, the committed files' schema, and the loader benchmark end to
end at a tiny size."""
from __future__ import annotations

import csv
import datetime
import importlib
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
results = importlib.import_module("_results")

MACHINE_KEYS = {"cpu", "cores", "gpu", "torch"}


def check_schema(record: dict, benchmark: str | None = None) -> None:
    assert tuple(sorted(record)) == tuple(sorted(results.KEYS))
    assert benchmark is None or record["benchmark"] == benchmark
    assert isinstance(record["command"], str) and "benchmarks/bench_" in record["command"]
    datetime.datetime.fromisoformat(record["date"])
    assert set(record["machine"]) == MACHINE_KEYS
    assert isinstance(record["machine"]["cores"], int) and isinstance(record["machine"]["cpu"], str)
    assert record["machine"]["gpu"] is None or isinstance(record["machine"]["gpu"], str)
    assert isinstance(record["rows"], list) and record["rows"] and all(isinstance(r, dict) for r in record["rows"])
    assert isinstance(record["summary"], dict) and record["summary"]
    assert all(isinstance(v, float) for v in record["summary"].values())


def test_the_writer_writes_the_schema(tmp_path):
    path = results.write_results("example", "cuda:1", [{"form": "ours", "seconds": 1.5}], {"ratio": 2},
                                 command=".venv/bin/python benchmarks/bench_example.py --device cuda:1",
                                 directory=tmp_path)
    assert path == tmp_path / "example_cuda.json"
    record = json.loads(path.read_text())
    check_schema(record, "example")
    assert record["summary"] == {"ratio": 2.0}
    assert record["machine"]["gpu"] is None or record["machine"]["gpu"]  # no GPU here: None


@pytest.mark.parametrize("path", sorted((BENCHMARKS / "results").glob("*.json")), ids=lambda p: p.name)
def test_the_committed_figures_follow_the_schema(path):
    record = json.loads(path.read_text())
    benchmark, device = path.stem.rsplit("_", 1)
    check_schema(record, benchmark)
    assert device in ("cpu", "cuda")
    assert (record["machine"]["gpu"] is not None) == (device == "cuda")


def test_the_loader_benchmark_runs_end_to_end(tmp_path, capsys):
    bench_loader = importlib.import_module("bench_loader")
    bench_loader.main(["--batch", "8", "--batches", "1", "--classes", "4", "--per-class", "4", "--workers", "1",
                       "--results-dir", str(tmp_path), "--root", str(tmp_path / "jpegs")])
    last_line = capsys.readouterr().out.strip().splitlines()[-1]
    assert last_line.startswith("ratio 1 workers/main images/s: ") or last_line.startswith("ratio 0 workers/main")
    record = json.loads((tmp_path / "loader_cpu.json").read_text())
    check_schema(record, "loader")
    assert [row["workers"] for row in record["rows"]] == [0, 1]


@pytest.mark.slow
def test_the_losses_benchmark_writes_its_series(tmp_path, monkeypatch, capsys):
    """bench_losses at two tiny sizes: a line per size with `ratio authors/ours` and the
    float64-reference errors, RKD-A's peak memory both ways, and the series in the JSON
    schema and as CSV with the machine, date and command on every row."""
    bench_losses = importlib.import_module("bench_losses")
    monkeypatch.setitem(bench_losses.SWEEPS, "quick", {"distance": ((8,), (4,)), "angle": ((6,), (3,))})
    bench_losses.main(["--quick", "--repeats", "1", "--results-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert out.count("ratio authors/ours") >= 4 and out.count("error vs float64") == 2
    assert "(a) warm child" in out and "(b) cold child" in out
    record = json.loads((tmp_path / "losses_cpu.json").read_text())
    check_schema(record, "losses")
    distance, angle = record["rows"]
    assert (distance["loss"], distance["N"], angle["loss"], angle["N"]) == ("RKD-D", 8, "RKD-A", 6)
    assert all(angle[f"{form}_{way}_peak_mib"] >= 0 for form in ("ours", "authors") for way in ("warm", "cold"))
    assert all(row[f"{form}_loss_error"] < 1e-5 for row in record["rows"] for form in ("ours", "authors"))
    assert "RKD-A lowest time ratio authors/ours over the sweep" in record["summary"]
    with open(tmp_path / "losses_cpu.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["loss"] for row in rows] == ["RKD-D", "RKD-A"]
    assert rows[0]["machine"] == record["machine"]["cpu"] and rows[0]["command"] == record["command"]
    assert record["command"].startswith(".venv/bin/python benchmarks/bench_losses.py --quick")
