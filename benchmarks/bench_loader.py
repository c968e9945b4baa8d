"""Images per second of the training input pipeline: the main process against N worker
processes, on a generated tree of JPEGs at paper size (500 x 375), with the paper's
training transform (resize to 256 x 256, random 224 crop, flip, ImageNet normalisation).

The pipeline measured is fit's own (rkd.train.loader.make_loader over a BatchStream of an
MPerClassSampler), so the figures are what training gets from its loader on this machine.
Each configuration loads --batches batches of --batch images after one warm-up batch
(which absorbs the workers' start); the ratio is of the best worker count against the
main process. With --cache, the same after the decoded-image cache (rkd.train.DecodedImageCache,
in memory) has been built; its build time is printed.

    .venv/bin/python benchmarks/bench_loader.py                 # 0 against 1, 2 workers
    .venv/bin/python benchmarks/bench_loader.py --workers 1 2 4 8 --cache
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import rkd.pin  # noqa: E402,F401  (before torch: the CPU pin, as stand-in runs have it)
import torch  # noqa: E402

from _images import PAPER_IMAGE_SIZE, make_jpeg_tree  # noqa: E402
from _results import command_line, write_results  # noqa: E402
from rkd.data import ImageListDataset, MPerClassSampler, get_transform  # noqa: E402
from rkd.train import DecodedImageCache  # noqa: E402
from rkd.train.loader import make_loader  # noqa: E402
from rkd.train.stream import BatchStream  # noqa: E402


def images_per_second(dataset, labels, workers: int, args) -> float:
    sampler = MPerClassSampler(labels, m=4, batch_size=args.batch, seed=0)
    stream = BatchStream(sampler, 0, args.batches + 1)
    loader = make_loader(dataset, stream, data_seed=0, num_workers=workers, pin_memory=args.pin_memory)
    iterator = iter(loader)
    next(iterator)  # warm-up: worker start, first decode
    start = time.perf_counter()
    for _ in range(args.batches):
        _, _, (images, _) = next(iterator)
    seconds = time.perf_counter() - start
    del iterator
    return args.batches * args.batch / seconds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--classes", type=int, default=64)
    parser.add_argument("--per-class", type=int, default=8)
    parser.add_argument("--root", default=None, help="where to write the JPEG tree (default: a temporary folder)")
    parser.add_argument("--cache", action="store_true", help="also measure with the decoded-image cache")
    parser.add_argument("--device", default="cpu", help="cuda: pin the batches' memory, as fit does on CUDA")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of the main process (default: torch's; workers always use 1)")
    parser.add_argument("--results-dir", default=None,
                        help="where to write the JSON figures (default: benchmarks/results)")
    args = parser.parse_args(argv)
    args.pin_memory = torch.device(args.device).type == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.root or scratch)
        paths, labels = make_jpeg_tree(root, args.classes, args.per_class)
        size_kb = sum(p.stat().st_size for p in paths) / len(paths) / 1024
        dataset = ImageListDataset(paths, labels, [str(c) for c in range(args.classes)],
                                   transform=get_transform("metric", train=True))
        print(f"{len(paths)} JPEGs of {PAPER_IMAGE_SIZE[0]}x{PAPER_IMAGE_SIZE[1]} ({size_kb:.0f} KB each), "
              f"transform: resize 256x256, random crop 224, flip, normalise; batches of {args.batch}; "
              f"torch {torch.__version__}, {torch.get_num_threads()} torch threads in the main process")
        rows = []
        for workers in [0, *args.workers]:
            rate = images_per_second(dataset, labels, workers, args)
            rows.append({"pipeline": "decode", "workers": workers, "images_per_s": rate})
            print(f"  decode every image, {workers} workers: {rate:8.1f} images/s", flush=True)
        if args.cache:
            start = time.perf_counter()
            cached = DecodedImageCache(dataset, "memory")
            build = time.perf_counter() - start
            print(f"  decoded-image cache built in {build:.1f} s ({cached.images.nbytes / 2**20:.0f} MiB)")
            for workers in [0, *args.workers]:
                rate = images_per_second(cached, labels, workers, args)
                rows.append({"pipeline": "cache", "workers": workers, "images_per_s": rate,
                             "cache_build_s": build})
                print(f"  decoded-image cache, {workers} workers: {rate:8.1f} images/s", flush=True)
    main_rate = rows[0]["images_per_s"]
    best = max((row for row in rows if row["pipeline"] == "decode"), key=lambda row: row["images_per_s"])
    summary = {"ratio_workers_main_images_per_s": best["images_per_s"] / main_rate, "best_workers": best["workers"]}
    if args.cache:
        best_cache = max((row for row in rows if row["pipeline"] == "cache"), key=lambda row: row["images_per_s"])
        summary["ratio_cache_main_images_per_s"] = best_cache["images_per_s"] / main_rate
    path = write_results("loader", args.device, rows, summary, directory=args.results_dir,
                         command=command_line([__file__, *(sys.argv[1:] if argv is None else argv)]))
    print(f"wrote {path}")
    extra = (f", with the cache: {summary['ratio_cache_main_images_per_s']:.2f}" if args.cache else "")
    print(f"ratio {best['workers']} workers/main images/s: {summary['ratio_workers_main_images_per_s']:.2f}{extra}")


if __name__ == "__main__":
    main()
