"""Run one table's (or figure's) runs on several GPUs with ``torchrun``.

    torchrun --nproc_per_node 8 -m rkd.experiments.launch table1 -p scale paper -p data_root /data -p device cuda

``torchrun`` starts one process per GPU; every process runs the experiment, and each of
its models trains data-parallel on the single-process batch (the global batch is the
preset's batch, split between the GPUs; see :mod:`rkd.train.distributed`). The ``-p NAME
VALUE`` pairs are the notebook's parameters, written as for papermill (``True``,
``None``, numbers and lists such as ``[0,1,2]`` are read as Python literals, anything
else as a string) and checked as the notebook checks them.

The trained models go to the model cache (``cache_dir``, default the project's
``.cache/``), where the notebook finds them: render the page afterwards, in one process
and with the same parameters, and it trains nothing again::

    papermill notebooks/table1_metric_learning.ipynb table1.ipynb -p scale paper -p data_root /data -p device cuda

Options of the launch itself (the same in every process): ``--no-sync-batchnorm``
(per-GPU batch statistics instead of SyncBatchNorm's global ones), ``--rkd-angle-anchors
local`` (each GPU computes the RKD-A triples whose vertex is one of its own rows: the same
loss at 1/N of the cost per GPU), ``--rows FILE`` (rank 0 writes the result rows as CSV),
``--timeout-minutes`` (how long a process waits for the others in a collective).

Without torchrun (``python -m rkd.experiments.launch ...``) the experiment runs in one
process, as the notebook would.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import Any

import rkd.pin  # noqa: F401  (first: the CPU pin goes into the environment before torch loads)

__all__ = ["main", "parse_value"]


def parse_value(text: str) -> Any:
    """A ``-p`` value: a Python literal (``True``, ``None``, ``3``, ``1e-3``, ``[0, 1]``) or else the text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _parser() -> argparse.ArgumentParser:
    from . import names

    parser = argparse.ArgumentParser(
        prog="torchrun --nproc_per_node N -m rkd.experiments.launch",
        description="Run one experiment's runs, one process per GPU (data-parallel training).",
        epilog="Example: torchrun --nproc_per_node 8 -m rkd.experiments.launch table1 -p scale paper "
               "-p data_root /data -p device cuda")
    parser.add_argument("experiment", choices=names(), help="the table or figure")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="a notebook parameter, as papermill's -p (repeat for each)")
    parser.add_argument("--no-sync-batchnorm", action="store_true",
                        help="per-GPU BatchNorm statistics (default on CUDA: SyncBatchNorm, the global batch's)")
    parser.add_argument("--rkd-angle-anchors", choices=("global", "local"), default="global",
                        help="local: each GPU computes the RKD-A triples whose vertex is one of its rows")
    parser.add_argument("--rows", metavar="FILE", help="write the result rows to this CSV file (rank 0)")
    parser.add_argument("--timeout-minutes", type=float, default=None,
                        help="how long a process waits for the others (default: PyTorch's)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from ..runtime import atomic_write
    from ..train import distributed
    from . import get, notebook_parameters

    args = _parser().parse_args(argv)
    experiment = get(args.experiment)
    given: dict[str, Any] = {}
    for name, text in args.parameter:
        if name in given:
            raise SystemExit(f"parameter {name!r} is given twice")
        given[name] = parse_value(text)
    params = notebook_parameters(given, experiment)  # unknown names and wrong types fail as in the notebook
    device = "cpu" if params.get("dry_run") else params.get("device", "cpu")  # a dry run trains on the CPU
    parallel = distributed.setup(device, timeout_minutes=args.timeout_minutes,
                                 sync_batchnorm=False if args.no_sync_batchnorm else None,
                                 angle_anchors=args.rkd_angle_anchors)
    main_process = parallel is None or parallel.is_main
    if not main_process:
        params["progress"] = False  # one progress bar, rank 0's
    try:
        # the other processes print what rank 0 prints; their warnings and errors still show
        quiet = contextlib.nullcontext() if main_process else contextlib.redirect_stdout(open(os.devnull, "w"))
        with quiet:
            results = experiment.run(**params)
        if main_process:
            processes = 1 if parallel is None else parallel.world_size
            print(f"{experiment.title}: {len(results.rows)} result rows from {processes} process(es); the "
                  f"trained models are in the cache, where the notebook reads them.")
            if args.rows:
                with atomic_write(args.rows, "w") as handle:
                    results.rows.to_csv(handle, index=False)
                print(f"rows written to {args.rows}")
    finally:
        distributed.teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
