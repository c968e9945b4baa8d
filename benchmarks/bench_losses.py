"""RKD-A and RKD-D: the authors' vectorised form against rkd.losses, forward + backward.

Both forms run on the same inputs in the same process for time; peak memory is measured
per form in a fresh child process (CPU) or with CUDA's allocator statistics (GPU).
See benchmarks/README.md for the method and the last figures.

    python benchmarks/bench_losses.py --n 256 --ds 512 --dt 2048 --repeats 5
    python benchmarks/bench_losses.py --device cuda --ds 2048 --dt 2048
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_results  # noqa: E402
from rkd.losses.reference import authors_rkd_angle, authors_rkd_distance  # noqa: E402
from rkd.losses.relational import rkd_angle, rkd_distance  # noqa: E402

# ---------------------------------------------------------------- the authors' form (baseline)




FORMS = {
    "authors": {"angle": authors_rkd_angle, "distance": authors_rkd_distance},
    "ours": {"angle": rkd_angle, "distance": rkd_distance},
}

# ---------------------------------------------------------------- helpers


def make_inputs(n, ds, dt, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    student = F.normalize(torch.randn(n, ds, generator=g), dim=1).to(device).requires_grad_(True)
    teacher = F.normalize(torch.randn(n, dt, generator=g), dim=1).to(device)
    return student, teacher


def forward_backward(loss_fn, student, teacher):
    student.grad = None
    loss = loss_fn(student, teacher)
    loss.backward()
    return loss.detach()


def synchronize(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_form(loss_fn, student, teacher, repeats, device):
    forward_backward(loss_fn, student, teacher)  # warm-up (lazy init, allocator)
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        forward_backward(loss_fn, student, teacher)
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def _proc_kib(field):
    match = re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(match.group(1))


def child_peak_memory(form, loss, n, ds, dt):
    """Run in a fresh process: peak resident memory (KiB) of one forward + backward above
    the resident memory just before it (inputs already built, torch initialised)."""
    student, teacher = make_inputs(n, ds, dt, "cpu")
    forward_backward(FORMS[form][loss], *make_inputs(8, ds, dt, "cpu"))  # initialise kernels on a tiny batch
    baseline = _proc_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark (VmHWM) to the current RSS
    forward_backward(FORMS[form][loss], student, teacher)
    peak = _proc_kib("VmHWM")
    return {"baseline_kib": baseline, "peak_kib": peak, "delta_kib": peak - baseline}


def cpu_peak_memory(form, loss, args):
    command = [sys.executable, __file__, "--child", form, loss, "--n", str(args.n), "--ds", str(args.ds),
               "--dt", str(args.dt), "--threads", str(torch.get_num_threads())]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def cpu_model():
    try:
        text = Path("/proc/cpuinfo").read_text()
        return re.search(r"model name\s*:\s*(.*)", text).group(1).strip()
    except (OSError, AttributeError):
        return platform.processor() or "unknown"


def fmt_mib(kib):
    return f"{kib / 1024:8.1f} MiB"

# ---------------------------------------------------------------- CPU comparison


def compare(args):
    device = args.device
    print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}, "
          f"torch {torch.__version__}")
    if torch.device(device).type == "cuda":
        print(f"gpu: {torch.cuda.get_device_name()}")
    print(f"N={args.n}, D_s={args.ds}, D_t={args.dt}, device={device}, repeats={args.repeats}, forward+backward")
    student, teacher = make_inputs(args.n, args.ds, args.dt, device)
    rows, summary = [], {}
    for loss in args.losses:
        values = {form: float(forward_backward(FORMS[form][loss], student, teacher)) for form in FORMS}
        times = {form: time_form(FORMS[form][loss], student, teacher, args.repeats, device) for form in FORMS}
        medians = {form: statistics.median(t) for form, t in times.items()}
        print(f"\n[{loss}] loss values: authors {values['authors']:.8g}, ours {values['ours']:.8g}")
        for form in FORMS:
            print(f"  time {form:8s} median {medians[form] * 1e3:10.2f} ms   (min {min(times[form]) * 1e3:.2f} ms)")
        print(f"  time ratio authors/ours (median): {medians['authors'] / medians['ours']:.1f}x")
        row = {"loss": f"RKD-{'A' if loss == 'angle' else 'D'}", "N": args.n, "D_s": args.ds, "D_t": args.dt,
               "authors_ms": medians["authors"] * 1e3, "ours_ms": medians["ours"] * 1e3,
               "time_ratio_authors_over_ours": medians["authors"] / medians["ours"],
               "loss_authors": values["authors"], "loss_ours": values["ours"]}
        rows.append(row)
        summary[f"{row['loss']} time ratio authors/ours"] = row["time_ratio_authors_over_ours"]
        if args.no_memory:
            continue
        if torch.device(device).type == "cuda":
            peaks = {form: cuda_peak_bytes(FORMS[form][loss], student, teacher) / 1024 for form in FORMS}
            label = "CUDA max_memory_allocated above the inputs"
        else:
            peaks = {form: cpu_peak_memory(form, loss, args)["delta_kib"] for form in FORMS}
            label = "VmHWM - VmRSS in a fresh process"
        for form in FORMS:
            print(f"  peak memory {form:8s} {fmt_mib(peaks[form])}   ({label})")
        print(f"  peak memory ratio authors/ours: {peaks['authors'] / max(peaks['ours'], 1):.1f}x")
        row.update({"authors_peak_mib": peaks["authors"] / 1024, "ours_peak_mib": peaks["ours"] / 1024,
                    "memory_ratio_authors_over_ours": peaks["authors"] / max(peaks["ours"], 1)})
        summary[f"{row['loss']} peak memory ratio authors/ours"] = row["memory_ratio_authors_over_ours"]
    write_results("losses", device, rows, summary)

# ---------------------------------------------------------------- GPU: largest N and time ratios


def cuda_peak_bytes(loss_fn, student, teacher):
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    forward_backward(loss_fn, student, teacher)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def attempt(loss_fn, n, ds, dt, device):
    """(fits, seconds) for one forward + backward at batch size n."""
    is_cuda = torch.device(device).type == "cuda"
    oom = (torch.cuda.OutOfMemoryError, RuntimeError) if is_cuda else (MemoryError,)
    try:
        student, teacher = make_inputs(n, ds, dt, device)
        synchronize(device)
        start = time.perf_counter()
        forward_backward(loss_fn, student, teacher)
        synchronize(device)
        return True, time.perf_counter() - start
    except oom as error:  # noqa: PERF203 - the point is to catch it
        if is_cuda and "out of memory" not in str(error).lower():
            raise
        return False, float("nan")
    finally:
        student = teacher = None
        if is_cuda:
            torch.cuda.empty_cache()


def largest_n(loss_fn, ds, dt, device, start, max_n, time_cap):
    """Double N from ``start`` while a forward + backward fits in memory (and took under
    ``time_cap`` seconds, and N <= max_n); then bisect to a multiple of 64 between the last
    N that fit and the first that did not. Returns (N, seconds at N, what stopped the search)."""
    good, good_time, bad, reason = None, float("nan"), None, f"reached --max-n {max_n}"
    n = start
    while n <= max_n:
        fits, seconds = attempt(loss_fn, n, ds, dt, device)
        if not fits:
            bad, reason = n, "out of memory"
            break
        good, good_time = n, seconds
        if seconds > time_cap:
            reason = f"time cap {time_cap:.0f}s (largest N tried that fits, not a memory limit)"
            break
        n *= 2
    if good is None:
        return None, float("nan"), reason
    while bad is not None and bad - good > 64:
        middle = (good + bad) // 2 // 64 * 64
        if middle <= good:
            break
        fits, seconds = attempt(loss_fn, middle, ds, dt, device)
        if fits:
            good, good_time = middle, seconds
        else:
            bad = middle
    return good, good_time, reason


def gpu_report(args):
    device = args.device
    name = torch.cuda.get_device_name() if torch.device(device).type == "cuda" else cpu_model()
    print(f"\nlargest N, D_s={args.ds}, D_t={args.dt}, device {device} ({name}), forward+backward")
    for loss in args.losses:
        for form in FORMS:
            n, seconds, reason = largest_n(FORMS[form][loss], args.ds, args.dt, device,
                                           args.search_start, args.max_n, args.time_cap)
            print(f"  [{loss}] {form:8s} largest N {n} ({seconds:.3f} s at that N; stopped by: {reason})")
    for n in args.ratio_ns:
        student, teacher = make_inputs(n, args.ds, args.dt, device)
        for loss in args.losses:
            medians = {}
            for form in FORMS:
                fits, _ = attempt(FORMS[form][loss], n, args.ds, args.dt, device)
                medians[form] = (statistics.median(time_form(FORMS[form][loss], student, teacher, args.repeats, device))
                                 if fits else float("nan"))
            peaks = {form: cuda_peak_bytes(FORMS[form][loss], student, teacher) / 2**20
                     for form in FORMS} if torch.device(device).type == "cuda" else {}
            ratio = medians["authors"] / medians["ours"]
            extra = "".join(f", peak {form} {mib:.1f} MiB" for form, mib in peaks.items())
            print(f"  [{loss}] N={n}: authors {medians['authors'] * 1e3:.2f} ms, ours {medians['ours'] * 1e3:.2f} ms, "
                  f"ratio {ratio:.1f}x{extra}")

# ---------------------------------------------------------------- entry point


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=256, help="batch size N")
    parser.add_argument("--ds", type=int, default=512, help="student dimension D_s")
    parser.add_argument("--dt", type=int, default=2048, help="teacher dimension D_t")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats after one warm-up")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--losses", nargs="+", default=["angle", "distance"], choices=["angle", "distance"])
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    parser.add_argument("--find-max-n", action="store_true",
                        help="search the largest N that fits (default on for cuda)")
    parser.add_argument("--search-start", type=int, default=128)
    parser.add_argument("--max-n", type=int, default=16384, help="upper end of the largest-N search")
    parser.add_argument("--time-cap", type=float, default=60.0, help="stop doubling N after a step this slow (s)")
    parser.add_argument("--ratio-ns", type=int, nargs="+", default=[128, 1024],
                        help="batch sizes for the time ratios of the largest-N report")
    parser.add_argument("--child", nargs=2, metavar=("FORM", "LOSS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(child_peak_memory(*args.child, args.n, args.ds, args.dt)))
        return
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch.cuda.is_available() is False")
    compare(args)
    if args.find_max_n or torch.device(args.device).type == "cuda":
        gpu_report(args)


if __name__ == "__main__":
    main()
