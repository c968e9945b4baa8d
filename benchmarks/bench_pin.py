"""What the CPU pin (rkd.portable) costs on the stand-in step, setting by setting.

The pin is three environment variables (``rkd.portable.PIN_ENVIRONMENT``), read by the
libraries when they load, so each setting runs in a child process of its own:

- ``native``: none of them (``RKD_PORTABLE_NUMERICS=0``): AVX-512 oneDNN and ATen kernels
  where the CPU has them, MKL's fastest path for this CPU;
- each variable alone (``RKD_PORTABLE_NUMERICS=0`` and that one variable):
  ``ONEDNN_MAX_CPU_ISA=AVX2`` (convolutions), ``MKL_CBWR=COMPATIBLE`` (matrix products,
  ``exp``/``log``), ``ATEN_CPU_CAPABILITY=avx2`` (ATen's own vector kernels: batch norm,
  element-wise, reductions);
- ``pinned``: all three, as ``import rkd.pin`` sets them (the default).

Each child times the distilled stand-in step of ``bench_stand_in_step.py`` (Table 1's ci
RKD-DA student, ``fit`` as the runner calls it, CPU time per step) and its parts (student
forward + backward, loss terms, optimiser, data, evaluation; timed in a bare training loop
as that benchmark times them). The settings alternate,
``--repeats`` rounds, and the medians are printed with each setting's ratio to native. On
a CPU without AVX-512 the oneDNN and ATen caps select the code that runs anyway, so
only ``MKL_CBWR`` can cost anything there; ``capability`` says what ATen ran.

    .venv/bin/python benchmarks/bench_pin.py --steps 200 --repeats 3

Last line: ``ratio pinned/native seconds per step: X`` and each variable's ratio alone.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
#: the pin's variables: rkd.portable.PIN_ENVIRONMENT (the children check), not imported here
#: because importing rkd.pin would put them into this process's environment
PIN = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "avx2"}
SETTINGS: dict[str, dict[str, str]] = {
    "native": {"RKD_PORTABLE_NUMERICS": "0"},
    **{f"{name}={value} alone": {"RKD_PORTABLE_NUMERICS": "0", name: value} for name, value in PIN.items()},
    "pinned (all three)": {"RKD_PORTABLE_NUMERICS": "1"},
}


def child(steps: int) -> dict:
    """CPU seconds per step of the stand-in step and its parts, in this process (its environment decides the pin)."""
    import bench_stand_in_step as bench  # imports rkd.pin first
    import torch

    from rkd.portable import PIN_ENVIRONMENT

    assert PIN_ENVIRONMENT == PIN, "bench_pin.PIN is out of date with rkd.portable.PIN_ENVIRONMENT"
    stand_in = bench.StandIn.build("glyphs_cub", 8, 0)
    bench.whole_step(stand_in, 20, progress=False)  # warm-up
    cpu_per_step, _wall = bench.whole_step(stand_in, steps, progress=False)
    parts = {part: cpu for part, (cpu, _wall) in bench.parts(stand_in, steps).items()}
    return {"step": cpu_per_step, "parts": parts, "capability": torch.backends.cpu.get_cpu_capability(),
            "environment": {name: os.environ.get(name) for name in PIN}}


def run_child(setting: str, steps: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in PIN and k != "RKD_PORTABLE_NUMERICS"}
    env.update({"OMP_NUM_THREADS": "1", **SETTINGS[setting]})
    done = subprocess.run([sys.executable, __file__, "--child", "--steps", str(steps)], env=env, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the child for {setting!r} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200, help="steps of the timed fit in each child")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of every setting, alternating")
    parser.add_argument("--results-dir", default=None, help="where to write the JSON (default benchmarks/results)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.steps)))
        return
    runs: dict[str, list[dict]] = {setting: [] for setting in SETTINGS}
    for _ in range(args.repeats):
        for setting in SETTINGS:
            runs[setting].append(run_child(setting, args.steps))
    native = statistics.median(r["step"] for r in runs["native"])
    part_names = list(runs["native"][0]["parts"])
    print(f"stand-in step (Table 1 ci RKD-DA student), CPU ms per step, medians of {args.repeats}; "
          f"parts: {', '.join(part_names)}")
    rows = []
    for setting, found in runs.items():
        step = statistics.median(r["step"] for r in found)
        parts = {part: statistics.median(r["parts"][part] for r in found) * 1e3 for part in part_names}
        rows.append({"setting": setting, "step_ms": step * 1e3, "ratio_to_native": step / native,
                     "capability": found[0]["capability"], **{f"{part} ms": ms for part, ms in parts.items()}})
        print(f"{setting:34s} {step * 1e3:7.2f} ms  x{step / native:5.3f}  ATen {found[0]['capability']:7s} parts: "
              + " ".join(f"{ms:6.2f}" for ms in parts.values()))
    from _results import write_results

    summary = {f"ratio {row['setting']}/native": row["ratio_to_native"] for row in rows[1:]}
    write_results("pin", "cpu", rows, summary, directory=args.results_dir)
    pinned = rows[-1]["ratio_to_native"]
    alone = ", ".join(f"{row['setting'].removesuffix(' alone')}: {row['ratio_to_native']:.3f}" for row in rows[1:-1])
    print(f"ratio pinned/native seconds per step: {pinned:.3f} ({alone})")


if __name__ == "__main__":
    main()
