"""What the CPU pin (rkd.portable) costs: the training steps of the ci presets, pinned and
not, timed in the same run.

The pin has to be in the environment before torch loads, so each setting runs in a
child process of this script (alternating, ``--repeats`` times, the median kept):
``RKD_PORTABLE_NUMERICS=1`` (the default of ``import rkd.pin``) against ``=0`` (the
libraries' native kernels: AVX-512 where the CPU has it, MKL's fastest path). Each
child times ``--steps`` optimiser steps of the ci steps that dominate the notebooks:
a teacher (`small_cnn_wide`, triplet), a student trained alone (`small_cnn`, triplet)
and a distilled student (`small_cnn`, RKD-DA from a precomputed teacher), batches of
60 glyph images, one thread.

    .venv/bin/python benchmarks/bench_pin.py --steps 100 --repeats 3

Last line: ``ratio pinned/native seconds per step: X`` (the mean over the three kinds).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
KINDS = ("teacher: small_cnn_wide, triplet", "student alone: small_cnn, triplet", "distilled: small_cnn, RKD-DA")


def child(steps: int) -> dict[str, float]:
    """Seconds per step of each kind, in this process (its environment decides the pin)."""
    sys.path.insert(0, str(HERE.parent))
    import rkd.pin  # noqa: F401  (first: the pin, or not, goes into the environment)
    import torch

    from rkd.data import MPerClassSampler
    from rkd.data.splits import load_split
    from rkd.distill import Distiller, PrecomputedTeacher
    from rkd.experiments.datasets import GLYPHS_CUB
    from rkd.losses.terms import TermContext
    from rkd.methods import get_method
    from rkd.models import build_model
    from rkd.runtime import configure_determinism, seed_everything
    from rkd.train import TrainConfig, fit

    configure_determinism(threads=1)
    train = load_split(GLYPHS_CUB, None, "train", train=True)
    taps = ("block2", "block3", "block4")
    teacher = build_model("small_cnn_wide", in_channels=1, embedding_dim=512, normalize=True, taps=taps).eval()
    cases = {
        KINDS[0]: ("small_cnn_wide", 512, "Triplet", None),
        KINDS[1]: ("small_cnn", 8, "Triplet", None),
        KINDS[2]: ("small_cnn", 8, "RKD-DA", PrecomputedTeacher(teacher, train)),
    }
    seconds = {}
    for kind, (network, dim, method, taught_by) in cases.items():
        seed_everything(0)
        model = build_model(network, in_channels=1, embedding_dim=dim, normalize=True, taps=taps)
        distiller = Distiller(model, taught_by, get_method(method), TermContext.from_models(model, taught_by))
        sampler = MPerClassSampler(train.targets, m=5, batch_size=60, seed=0)
        fit(distiller, train, sampler, TrainConfig(steps=5, lr=1e-3), progress=False, num_workers=0)  # warm-up
        start = time.perf_counter()
        fit(distiller, train, sampler, TrainConfig(steps=steps, lr=1e-3), progress=False, num_workers=0)
        seconds[kind] = (time.perf_counter() - start) / steps
    return seconds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.steps)))
        return
    runs: dict[str, list[dict[str, float]]] = {"pinned": [], "native": []}
    for _ in range(args.repeats):
        for setting, flag in (("pinned", "1"), ("native", "0")):
            env = {**os.environ, "RKD_PORTABLE_NUMERICS": flag, "OMP_NUM_THREADS": "1"}
            for name in ("ONEDNN_MAX_CPU_ISA", "MKL_CBWR", "ATEN_CPU_CAPABILITY"):
                env.pop(name, None)
            done = subprocess.run([sys.executable, __file__, "--child", "--steps", str(args.steps)], env=env,
                                  capture_output=True, text=True, check=True)
            runs[setting].append(json.loads(done.stdout.strip().splitlines()[-1]))
    rows = []
    for kind in KINDS:
        pinned = statistics.median(r[kind] for r in runs["pinned"])
        native = statistics.median(r[kind] for r in runs["native"])
        rows.append({"step": kind, "pinned_ms": pinned * 1e3, "native_ms": native * 1e3, "ratio": pinned / native})
        print(f"{kind:38s} pinned {pinned * 1e3:7.1f} ms  native {native * 1e3:7.1f} ms  ratio {pinned / native:.2f}")
    ratio = statistics.mean(r["ratio"] for r in rows)
    from _results import write_results

    write_results("pin", "cpu", rows, {"ratio pinned/native seconds per step": ratio})
    print(f"ratio pinned/native seconds per step: {ratio:.2f}")


if __name__ == "__main__":
    main()
