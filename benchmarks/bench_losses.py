"""RKD-D and RKD-A: the authors' vectorised form (rkd/losses/reference.py) against
rkd.losses, forward + backward, over a sweep of batch sizes N and widths D (D_s = D_t = D).

For every size it prints the median time of each form (same process, alternating) and
``ratio authors/ours``, the error of each form's loss and gradient against a float64
reference, and for RKD-A the peak memory of each form measured two ways, each in a fresh
child process of this script (which imports ``rkd.pin``, ``rkd`` and torch first, so
library imports are never counted):

- (a) warm: the child builds the inputs and runs the form once on a batch of 8, then
  measures the full-size call: peak resident memory (``VmHWM``, reset through
  ``/proc/self/clear_refs`` just before the call) minus the resident memory then.
- (b) cold: the same from just before the child's first call of the form to the end of
  its backward pass: what a process pays for its first call, library code paged in and
  allocator growth included.

The float64 reference is the authors' form in float64 for RKD-D, and ``rkd_angle`` in
float64 for RKD-A (its float64 Gram matrices and float64 cosines; the tests hold it to the
loop form and the authors' float64 form within 1e-9), on the same inputs.

The series goes to ``results/losses_<device>.json`` (read by the book's performance page)
and ``results/losses_<device>.csv``. See benchmarks/README.md for the last figures.

    .venv/bin/python benchmarks/bench_losses.py            # the sweep, 8.5 minutes on a shared 2-core machine
    .venv/bin/python benchmarks/bench_losses.py --quick    # four sizes per loss, under two minutes
    .venv/bin/python benchmarks/bench_losses.py --full     # RKD-A up to N = 2048 too (an hour)
    .venv/bin/python benchmarks/bench_losses.py --n 256 --ds 512 --dt 2048     # one size, not written
    .venv/bin/python benchmarks/bench_losses.py --device cuda --n 256 --ds 2048 --dt 2048
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import rkd.pin  # noqa: E402,F401  (before torch: the CPU pin, as stand-in runs have it)
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from _results import RESULTS_DIR, command_line, cpu_model, write_results  # noqa: E402
from rkd.losses.reference import authors_rkd_angle, authors_rkd_distance  # noqa: E402
from rkd.losses.relational import rkd_angle, rkd_distance  # noqa: E402
from rkd.portable import check_pin  # noqa: E402

FORMS = {
    "authors": {"angle": authors_rkd_angle, "distance": authors_rkd_distance},
    "ours": {"angle": rkd_angle, "distance": rkd_distance},
}
LOSS_NAMES = {"distance": "RKD-D", "angle": "RKD-A"}
#: (batch sizes, widths) per loss and sweep
SWEEPS = {
    "quick": {"distance": ((32, 512), (16, 512)), "angle": ((32, 256), (16, 512))},
    "default": {"distance": ((32, 128, 512, 2048), (16, 128, 512, 2048)),
                "angle": ((32, 128, 256, 512), (16, 512, 2048))},
    "full": {"distance": ((32, 128, 512, 2048), (16, 128, 512, 2048)),
             "angle": ((32, 128, 256, 512, 2048), (16, 128, 512, 2048))},
}
#: the sizes the issue's RKD-A targets are stated at (N, D)
ANGLE_TARGETS = ((256, 512), (256, 2048))
NAN = float("nan")

# ---------------------------------------------------------------- one call


def make_inputs(n, ds, dt, device="cpu", seed=0):
    """Random L2-normalised rows: the student [n, ds] with gradients, the teacher [n, dt]."""
    g = torch.Generator().manual_seed(seed)
    student = F.normalize(torch.randn(n, ds, generator=g), dim=1).to(device).requires_grad_(True)
    teacher = F.normalize(torch.randn(n, dt, generator=g), dim=1).to(device)
    return student, teacher


def forward_backward(loss_fn, student, teacher):
    """One forward and backward pass; the loss and the student's gradient."""
    student.grad = None
    loss = loss_fn(student, teacher)
    loss.backward()
    return loss.detach(), student.grad


def synchronize(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def clock(device):
    """The clock a call is timed by: on the CPU with one thread, this process's CPU time
    (wall-clock time on an idle machine, and not inflated by other jobs on a shared one);
    wall-clock time otherwise (GPUs, several threads)."""
    return time.process_time if torch.device(device).type == "cpu" and torch.get_num_threads() == 1 \
        else time.perf_counter


def timed(loss_fn, student, teacher, device):
    now = clock(device)
    start = now()
    loss, grad = forward_backward(loss_fn, student, teacher)
    synchronize(device)
    return now() - start, loss, grad


def relative_errors(loss, grad, reference):
    reference_loss, reference_grad = reference
    loss_error = abs(float(loss) - float(reference_loss)) / abs(float(reference_loss))
    grad_error = float((grad.double() - reference_grad).norm() / reference_grad.norm())
    return loss_error, grad_error


def float64_reference(loss, student, teacher):
    """The reference loss and gradient (see the module docstring), on the same inputs."""
    reference_fn = authors_rkd_distance if loss == "distance" else rkd_angle
    s64 = student.detach().double().requires_grad_(True)
    value, grad = forward_backward(reference_fn, s64, teacher.double())
    return value, grad.clone()

# ---------------------------------------------------------------- peak memory in a child process


def _proc_kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def child_peak_memory(form, loss, n, ds, dt, way):
    """In a fresh process: KiB of resident memory the full-size call added at its peak,
    measured ``way`` (``"warm"`` or ``"cold"``, see the module docstring)."""
    student, teacher = make_inputs(n, ds, dt)
    if way == "warm":
        forward_backward(FORMS[form][loss], *make_inputs(8, ds, dt, seed=1))
    baseline = _proc_kib("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark (VmHWM) to the current RSS
        reset = True
    except OSError:  # not Linux, or not allowed: ru_maxrss is the lifetime peak, read as an upper bound
        reset = False
    forward_backward(FORMS[form][loss], student, teacher)
    peak = _proc_kib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"baseline_kib": baseline, "peak_kib": peak, "delta_kib": peak - baseline}


def peak_memory_mib(form, loss, n, ds, dt, way):
    command = [sys.executable, __file__, "--child", form, loss, way, "--n", str(n), "--ds", str(ds),
               "--dt", str(dt), "--threads", str(torch.get_num_threads())]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["delta_kib"] / 1024

def cuda_peak_mib(loss_fn, student, teacher):
    """CUDA: max_memory_allocated during one call, above what was allocated before it."""
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    forward_backward(loss_fn, student, teacher)
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20

# ---------------------------------------------------------------- one size


def authors_angle_cost(n, ds, dt):
    """(GiB, multiply-adds) the authors' RKD-A needs: its N x N x D difference and unit
    tensors, their gradients and four N x N x N angle tensors; and its four batched products."""
    gib = 4 * (2 * n * n * dt + 4 * n * n * ds + 4 * n**3) / 2**30
    return gib, n**3 * (dt + 3 * ds)


def authors_skip_reason(loss, n, ds, dt, args):
    """Why the authors' form is not run at this size (None: it is). Their RKD-A runs at the
    target sizes whenever it fits in memory, elsewhere within both limits."""
    if loss != "angle":
        return None
    gib, work = authors_angle_cost(n, ds, dt)
    target = ds == dt and (n, ds) in ANGLE_TARGETS
    if gib > args.authors_max_gib or (work > args.authors_max_work and not target):
        return (f"authors' form not run: needs about {gib:.1f} GiB and {work:.2g} multiply-adds "
                f"(limits --authors-max-gib {args.authors_max_gib:g}, --authors-max-work {args.authors_max_work:.2g})")
    return None


def _ratio(authors, ours):
    """authors / ours; not a number where either was not measured, or ours is 0 (a peak
    below the kernel's page granularity)."""
    return authors / ours if ours > 0 else NAN


def measure(loss, n, ds, dt, args, memory):
    """Every figure of one size, as a row."""
    device = args.device
    student, teacher = make_inputs(n, ds, dt, device)
    skip = authors_skip_reason(loss, n, ds, dt, args)
    forms = ["ours"] if skip else ["ours", "authors"]
    first = {form: timed(FORMS[form][loss], student, teacher, device) for form in forms}  # warm-up
    if max(seconds for seconds, _, _ in first.values()) < args.slow_seconds:  # the first call initialised things
        first = {form: timed(FORMS[form][loss], student, teacher, device) for form in forms}
    times = {form: [] for form in forms}
    results = {}
    longest = max(seconds for seconds, _, _ in first.values())
    slow = longest > args.slow_seconds
    # fast calls are timed many times (about args.fill_seconds per form), so that a median
    # of milliseconds is not one scheduler tick away from another
    runs = 1 if slow else max(args.repeats, min(200, int(args.fill_seconds / max(longest, 1e-4))))
    for _ in range(runs):
        for form in forms:  # alternating, so that a slower moment of the machine hits both
            seconds, value, grad = timed(FORMS[form][loss], student, teacher, device) if not slow else first[form]
            times[form].append(seconds)
            results[form] = (value, grad.clone())
    reference = float64_reference(loss, student, teacher)
    row = {"loss": LOSS_NAMES[loss], "N": n, "D_s": ds, "D_t": dt}
    for form in ("ours", "authors"):
        row[f"{form}_ms"] = statistics.median(times[form]) * 1e3 if form in times else NAN
    row["ratio_time_authors_over_ours"] = _ratio(row["authors_ms"], row["ours_ms"])
    for way in ("warm", "cold"):
        for form in ("ours", "authors"):
            row[f"{form}_{way}_peak_mib"] = NAN
            if memory and form in forms and device == "cpu":
                row[f"{form}_{way}_peak_mib"] = peak_memory_mib(form, loss, n, ds, dt, way)
            elif memory and form in forms and way == "warm":  # CUDA: the allocator's own count
                row[f"{form}_{way}_peak_mib"] = cuda_peak_mib(FORMS[form][loss], student, teacher)
        row[f"ratio_{way}_peak_authors_over_ours"] = _ratio(row[f"authors_{way}_peak_mib"], row[f"ours_{way}_peak_mib"])
    for form in ("ours", "authors"):
        errors = relative_errors(*results[form], reference) if form in results else (NAN, NAN)
        row[f"{form}_loss_error"], row[f"{form}_grad_error"] = errors
    row["note"] = skip or ""
    return row


def _fmt(value, spec):
    return "--" if math.isnan(value) else format(value, spec)


def print_row(row):
    print(f"{row['loss']} N={row['N']} D_s={row['D_s']} D_t={row['D_t']}: ours {_fmt(row['ours_ms'], '.2f')} ms, "
          f"authors {_fmt(row['authors_ms'], '.2f')} ms, "
          f"ratio authors/ours {_fmt(row['ratio_time_authors_over_ours'], '.2f')}", flush=True)
    print(f"    error vs float64 (loss, gradient): ours {_fmt(row['ours_loss_error'], '.1e')}, "
          f"{_fmt(row['ours_grad_error'], '.1e')}; authors {_fmt(row['authors_loss_error'], '.1e')}, "
          f"{_fmt(row['authors_grad_error'], '.1e')}", flush=True)
    for way, label in (("warm", "(a) warm child"), ("cold", "(b) cold child, first call")):
        if not math.isnan(row[f"ours_{way}_peak_mib"]):
            print(f"    peak memory {label}: ours {row[f'ours_{way}_peak_mib']:.1f} MiB, authors "
                  f"{_fmt(row[f'authors_{way}_peak_mib'], '.1f')} MiB, ratio authors/ours "
                  f"{_fmt(row[f'ratio_{way}_peak_authors_over_ours'], '.1f')}", flush=True)
    if row["note"]:
        print(f"    {row['note']}", flush=True)

# ---------------------------------------------------------------- the sweep


def sweep_sizes(name):
    for loss in ("distance", "angle"):
        ns, ds = SWEEPS[name][loss]
        for d in ds:
            for n in ns:
                yield loss, n, d


def summarize(rows):
    """The figures the issue's targets are stated in: the lowest ratios over the sweep and
    RKD-A's ratios at its target sizes."""
    summary = {}
    for loss in ("RKD-D", "RKD-A"):
        measured = [r for r in rows if r["loss"] == loss and not math.isnan(r["ratio_time_authors_over_ours"])]
        if measured:
            summary[f"{loss} lowest time ratio authors/ours over the sweep"] = min(
                r["ratio_time_authors_over_ours"] for r in measured)
        for way in ("warm", "cold"):
            ratios = [r[f"ratio_{way}_peak_authors_over_ours"] for r in measured
                      if not math.isnan(r[f"ratio_{way}_peak_authors_over_ours"])]
            if ratios:
                summary[f"{loss} lowest peak-memory ratio authors/ours over the sweep, {way}"] = min(ratios)
    for n, d in ANGLE_TARGETS:
        for row in rows:
            if row["loss"] == "RKD-A" and (row["N"], row["D_s"], row["D_t"]) == (n, d, d):
                summary[f"RKD-A N={n} D={d} time ratio authors/ours"] = row["ratio_time_authors_over_ours"]
                for way in ("warm", "cold"):
                    summary[f"RKD-A N={n} D={d} peak-memory ratio authors/ours, {way}"] = \
                        row[f"ratio_{way}_peak_authors_over_ours"]
    return summary


def write_csv(rows, path, command, date, machine):
    columns = [*rows[0], "machine", "date", "command"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "machine": machine, "date": date, "command": command})


def header(args):
    pinned = not check_pin(run_canary=False)
    print(f"machine: {cpu_model()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"CPU pin {'on' if pinned else 'off'}, device {args.device}; forward + backward, median of "
          f"{args.repeats} or more runs (about {args.fill_seconds:g} s of them) after a warm-up, alternating "
          f"(one run when a call takes over {args.slow_seconds:g} s), "
          f"{'CPU time' if clock(args.device) is time.process_time else 'wall-clock time'}", flush=True)


def run_sweep(args):
    header(args)
    name = "quick" if args.quick else "full" if args.full else "default"
    rows = []
    for loss, n, d in sweep_sizes(name):
        rows.append(measure(loss, n, d, d, args, memory=loss == "angle" or args.distance_memory))
        print_row(rows[-1])
    summary = summarize(rows)
    print()
    for key, value in summary.items():
        print(f"{key}: {value:.2f}")
    if not args.no_write:
        path = write_results("losses", args.device, rows, summary, command=args.command, directory=args.results_dir)
        record = json.loads(path.read_text())
        write_csv(rows, path.with_suffix(".csv"), record["command"], record["date"], record["machine"]["cpu"])
        print(f"written: {path} and its .csv")


def run_one(args):
    header(args)
    for loss in args.losses:
        print_row(measure(loss, args.n, args.ds, args.dt, args, memory=not args.no_memory))

# ---------------------------------------------------------------- GPU: largest N and time ratios


def attempt(loss_fn, n, ds, dt, device):
    """(fits, seconds) for one forward + backward at batch size n."""
    is_cuda = torch.device(device).type == "cuda"
    oom = (torch.cuda.OutOfMemoryError, RuntimeError) if is_cuda else (MemoryError,)
    try:
        student, teacher = make_inputs(n, ds, dt, device)
        synchronize(device)
        return True, timed(loss_fn, student, teacher, device)[0]
    except oom as error:  # noqa: PERF203 - the point is to catch it
        if is_cuda and "out of memory" not in str(error).lower():
            raise
        return False, NAN
    finally:
        student = teacher = None
        if is_cuda:
            torch.cuda.empty_cache()


def largest_n(loss_fn, ds, dt, device, start, max_n, time_cap):
    """Double N from ``start`` while a forward + backward fits in memory (and took under
    ``time_cap`` seconds, and N <= max_n); then bisect to a multiple of 64 between the last
    N that fit and the first that did not. Returns (N, seconds at N, what stopped the search)."""
    good, good_time, bad, reason = None, NAN, None, f"reached --max-n {max_n}"
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
        return None, NAN, reason
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

# ---------------------------------------------------------------- entry point


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smaller sweep (under two minutes)")
    parser.add_argument("--full", action="store_true", help="RKD-A at N = 2048 and every D too (long)")
    parser.add_argument("--n", type=int, default=None, help="one batch size instead of the sweep (with --ds, --dt)")
    parser.add_argument("--ds", type=int, default=512, help="student width D_s (with --n)")
    parser.add_argument("--dt", type=int, default=2048, help="teacher width D_t (with --n)")
    parser.add_argument("--losses", nargs="+", default=["angle", "distance"], choices=["angle", "distance"])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per form after one warm-up")
    parser.add_argument("--slow-seconds", type=float, default=2.0,
                        help="a form whose warm-up took longer is timed by that run alone")
    parser.add_argument("--fill-seconds", type=float, default=0.3,
                        help="faster calls are timed more than --repeats times, to fill about this long (at most 200)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--authors-max-gib", type=float, default=8.0,
                        help="skip the authors' RKD-A where it would need more memory than this")
    parser.add_argument("--authors-max-work", type=float, default=2.0**36,
                        help="skip the authors' RKD-A where it would take more multiply-adds than this")
    parser.add_argument("--distance-memory", action="store_true", help="measure RKD-D's peak memory too")
    parser.add_argument("--no-memory", action="store_true", help="one size: skip the peak-memory measurement")
    parser.add_argument("--no-write", action="store_true", help="do not write results/losses_<device>.json/.csv")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the .json and .csv go")
    parser.add_argument("--find-max-n", action="store_true", help="search the largest N that fits (default on cuda)")
    parser.add_argument("--search-start", type=int, default=128)
    parser.add_argument("--max-n", type=int, default=16384, help="upper end of the largest-N search")
    parser.add_argument("--time-cap", type=float, default=60.0, help="stop doubling N after a step this slow (s)")
    parser.add_argument("--child", nargs=3, metavar=("FORM", "LOSS", "WAY"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.command = command_line([__file__, *(sys.argv[1:] if argv is None else argv)])
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(child_peak_memory(*args.child[:2], args.n, args.ds, args.dt, args.child[2])))
        return
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch.cuda.is_available() is False")
    if args.full:
        args.authors_max_work = max(args.authors_max_work, 2.0**38)
    if args.n is None:
        run_sweep(args)
    else:
        run_one(args)
    if args.find_max_n or torch.device(args.device).type == "cuda":
        gpu_report(args)


if __name__ == "__main__":
    main()
