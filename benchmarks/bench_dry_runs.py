"""How long each notebook's paper-scale dry run takes on this machine's CPU: every
dataset generated in its official layout (tests/fixtures_data.py, the trees the dry-run
test uses), then ``experiment.run(scale="paper", data_root=..., dry_run=True)`` per table,
timed from the call to its results (the data check, the plan, every run of each code
path for two steps, the evaluations and the page's analysis).

    .venv/bin/python benchmarks/bench_dry_runs.py [table1 table4 ...]

Writes ``benchmarks/results/dry_runs_cpu.json`` (the seconds per notebook, with the
machine's load average when it started: a shared machine's times are upper bounds).
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import rkd.pin  # noqa: E402,F401  (before torch, as the notebooks have it)

from fixtures_data import (  # noqa: E402
    make_cars196_tree, make_cifar100_tree, make_cub200_tree, make_mini_imagenet_tree, make_omniglot_tree,
    make_sop_tree, make_stanford_dogs_tree, make_tiny_imagenet_tree,
)
from _results import write_results  # noqa: E402
from rkd.experiments import get, names  # noqa: E402

#: the issue's target for any one table's dry run on a 2-core CPU
TARGET_SECONDS = 300


def data_root(root: Path) -> Path:
    """Every dataset of the paper, as small as a dry run allows (the dry-run test's trees)."""
    make_cub200_tree(root, num_classes=4, images_per_class=5)
    make_cars196_tree(root / "cars196", num_classes=4, images_per_class=5)
    make_sop_tree(root, num_train_classes=5, num_test_classes=3, images_per_class=2)
    make_stanford_dogs_tree(root / "stanford_dogs", num_classes=3, train_per_class=1, test_per_class=3)
    make_cifar100_tree(root, train_per_class=1, test_per_class=2, num_classes=5)
    make_tiny_imagenet_tree(root, num_classes=3, train_per_class=2, val_per_class=1)
    make_omniglot_tree(root / "omniglot", images_per_character=6)
    make_mini_imagenet_tree(root / "mini_imagenet", classes_per_split=(3, 2, 2), images_per_class=6)
    return root


def main(chosen: list[str]) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        root = data_root(Path(folder) / "data")
        for name in chosen or names():
            load = os.getloadavg()[0]
            started = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()), tempfile.TemporaryDirectory() as cache:
                results = get(name).run(scale="paper", data_root=str(root), dry_run=True, progress=False,
                                        cache_dir=cache)
            seconds = time.perf_counter() - started
            rows.append({"notebook": name, "seconds": seconds, "runs_in_full_plan": len(results.plan),
                         "load_average_at_start": load})
            print(f"{name}: {seconds:.0f} s ({len(results.plan)} runs in the full plan; load {load:.1f})", flush=True)
    slowest = max(row["seconds"] for row in rows)
    print(f"slowest dry run {slowest:.0f} s; target {TARGET_SECONDS} s: "
          f"ratio target/slowest {TARGET_SECONDS / slowest:.2f}")
    write_results("dry_runs", "cpu", rows, {"slowest_seconds": slowest,
                                            "ratio_target_over_slowest": TARGET_SECONDS / slowest})


if __name__ == "__main__":
    main(sys.argv[1:])
