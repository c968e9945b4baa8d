"""Recall@K at Stanford Online Products size: rkd.metrics.recall_at_k against faiss's
exact IndexFlatL2 search, on the same embeddings, in one process.

The embeddings are generated (seed 0): 60,502 x 512 float32, L2-normalised, in 11,316
classes of 2 to 12 images (SOP's test split has 60,502 images of 11,316 products); each
class is a random unit centre plus Gaussian noise of norm about 2.2, which puts Recall@1
near 79 %, where SOP results lie. Both searches
see every embedding as a query against all the others, itself excluded, and report
Recall@1, 10, 100 and 1000 (SOP's K); the recall values must be identical.

Time: after a warm-up of both on a subset, each search runs --repeats times (default 1:
a run takes minutes on 2 cores), alternating which goes first, with the same threads
(--threads, default 2); the ratio is of the medians. Extra memory: each search runs once
more in a fresh child process, which reads VmRSS with the inputs built, resets the
high-water mark (/proc/self/clear_refs) and reads VmHWM after the search (Linux only).

    .venv/bin/python benchmarks/bench_recall.py
    .venv/bin/python benchmarks/bench_recall.py --device cuda     # ours on the GPU, faiss on the CPU
    .venv/bin/python benchmarks/bench_recall.py --n 6000 --classes 1100 --repeats 1   # quick check

faiss (``pip install faiss-cpu``) is a benchmark dependency only.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import rkd.pin  # noqa: E402,F401  (before torch: the CPU pin, as stand-in runs have it)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from _results import command_line, write_results  # noqa: E402
from rkd.metrics import recall_at_k  # noqa: E402

SOP_TEST_IMAGES, SOP_TEST_CLASSES = 60_502, 11_316


def make_embeddings(n: int, classes: int, dim: int, seed: int = 0, noise: float = 2.2):
    """L2-normalised ``[n, dim]`` float32 embeddings in ``classes`` classes of >= 2 images."""
    rng = np.random.default_rng(seed)
    sizes = np.full(classes, 2)
    extra = rng.multinomial(n - 2 * classes, rng.dirichlet(np.ones(classes) * 2.0))
    sizes += extra
    labels = np.repeat(np.arange(classes), sizes)
    centres = rng.standard_normal((classes, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[labels] + noise * rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    order = rng.permutation(n)
    return np.ascontiguousarray(x[order]), labels[order]


def faiss_recall(x: np.ndarray, labels: np.ndarray, ks) -> dict[int, float]:
    """faiss IndexFlatL2 (exact L2 search), each query against the others."""
    import faiss

    k_max = max(ks)
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    _, neighbours = index.search(x, k_max + 1)
    rows = np.arange(len(x))[:, None]
    is_self = neighbours == rows
    # drop the query itself (or, if it is not among them, the farthest)
    drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), k_max)
    keep = np.ones_like(neighbours, dtype=bool)
    keep[np.arange(len(x)), drop] = False
    others = neighbours[keep].reshape(len(x), k_max)
    match = labels[others] == labels[:, None]
    first_hit = np.where(match.any(axis=1), match.argmax(axis=1), k_max)
    return {k: 100.0 * float((first_hit < k).sum()) / len(x) for k in ks}


def run_form(form: str, x_np, labels_np, ks, device: str):
    if form == "faiss":
        return faiss_recall(x_np, labels_np, ks)
    x = torch.from_numpy(x_np).to(device)
    labels = torch.from_numpy(labels_np).to(device)
    result = recall_at_k(x, labels, ks)
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return result


def _proc_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))


def child_memory(form: str, args) -> dict:
    """In a fresh process: peak resident memory a search adds above the built inputs."""
    x_np, labels_np = make_embeddings(args.n, args.classes, args.dim)
    warm = min(args.n, 4 * max(args.ks))
    run_form(form, x_np[:warm], labels_np[:warm], [k for k in args.ks if k < warm], "cpu")  # initialise libraries
    baseline = _proc_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    run_form(form, x_np, labels_np, args.ks, "cpu")
    peak = _proc_kib("VmHWM")
    return {"baseline_kib": baseline, "peak_kib": peak, "extra_mib": (peak - baseline) / 1024}


def memory_in_child(form: str, args) -> dict:
    command = [sys.executable, __file__, "--child", form, "--n", str(args.n), "--classes", str(args.classes),
               "--dim", str(args.dim), "--threads", str(args.threads), "--ks", *map(str, args.ks)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def set_threads(threads: int) -> None:
    torch.set_num_threads(threads)
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except ImportError:
        pass


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=SOP_TEST_IMAGES)
    parser.add_argument("--classes", type=int, default=SOP_TEST_CLASSES)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 10, 100, 1000],
                        help="the K of Recall@K (SOP's are 1, 10, 100, 1000)")
    parser.add_argument("--device", default="cpu", help="where ours runs: cpu or cuda (faiss-cpu runs on the CPU)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="timed runs of each (alternating which goes first)")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--child", choices=["ours", "faiss"], help=argparse.SUPPRESS)
    parser.add_argument("--results-dir", default=None,
                        help="where to write the JSON figures (default: benchmarks/results)")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    if args.child:
        print(json.dumps(child_memory(args.child, args)))
        return
    try:
        import faiss
    except ImportError:
        parser.error("faiss is not installed: pip install faiss-cpu (a benchmark dependency only)")
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch.cuda.is_available() is False")

    x_np, labels_np = make_embeddings(args.n, args.classes, args.dim)
    print(f"{args.n} x {args.dim} float32 embeddings, {args.classes} classes, K = {args.ks}, "
          f"threads {args.threads}, torch {torch.__version__}, faiss {faiss.__version__}, ours on {args.device}")
    warm = min(args.n, 4 * max(args.ks))
    for form in ("ours", "faiss"):  # warm-up on a subset: libraries, thread pools, allocator
        run_form(form, x_np[:warm], labels_np[:warm], [k for k in args.ks if k < warm], args.device)
    results, times = {}, {"ours": [], "faiss": []}
    for repeat in range(args.repeats):
        for form in ("ours", "faiss") if repeat % 2 == 0 else ("faiss", "ours"):
            start = time.perf_counter()
            results[form] = run_form(form, x_np, labels_np, args.ks, args.device)
            times[form].append(time.perf_counter() - start)
            print(f"  run {repeat + 1}: {form} {times[form][-1]:.1f} s", flush=True)
    for k in args.ks:
        print(f"  Recall@{k}: ours {results['ours'][k]:.4f}, faiss {results['faiss'][k]:.4f}")
    identical = results["ours"] == results["faiss"]
    print(f"identical recall values: {identical}")

    memory = {}
    if not args.no_memory:
        memory = {form: memory_in_child(form, args) for form in ("ours", "faiss")}
    rows = []
    for form in ("ours", "faiss"):
        row = {"form": form, "median_s": statistics.median(times[form]), "min_s": min(times[form]),
               "times_s": times[form], **{f"recall_at_{k}": results[form][k] for k in args.ks}}
        if memory:
            row["extra_memory_mib"] = memory[form]["extra_mib"]
        rows.append(row)
        extra = f", extra memory {memory[form]['extra_mib']:8.1f} MiB" if memory else ""
        print(f"  {form:6s} median {row['median_s']:8.2f} s (min {row['min_s']:.2f} s, {args.repeats} runs){extra}")
    ratio = rows[0]["median_s"] / rows[1]["median_s"]
    ours_extra = memory["ours"]["extra_mib"] if memory else float("nan")
    path = write_results("recall", args.device, rows,
                         {"ratio_ours_faiss_seconds": ratio, "extra_memory_mib": ours_extra,
                          "identical": float(identical)}, directory=args.results_dir,
                         command=command_line([__file__, *(sys.argv[1:] if argv is None else argv)]))
    print(f"wrote {path}")
    if not identical:
        raise SystemExit("the recall values differ between rkd and faiss")
    print(f"ratio ours/faiss seconds: {ratio:.2f}, extra memory MiB: {ours_extra:.0f}")


if __name__ == "__main__":
    main()
