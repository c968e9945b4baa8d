"""Training throughput: rkd.train.fit against a re-creation of the authors' training
loop (lenscloth/RKD, run_distill.py), in images per second, in one process.

Both train a ResNet18 student (embedding 128, not normalised) from a ResNet50 teacher
(embedding 512, L2-normalised) with RKD-DA (RKD-D x1 + RKD-A x2) on the same generated
tree of JPEGs (500 x 375), each with its own input pipeline:

- **authors** (written from the facts of their run_distill.py, not copied): a DataLoader
  with ``num_workers=8`` and ``pin_memory=True`` (on CUDA) over their NPairs-style
  sampler (classes in random order, up to m=5 images each, until the batch is full),
  transform Resize((256, 256)) / RandomCrop / flip / ToTensor with the ImageNet
  normalisation done on the device after a blocking ``.cuda()`` copy; fp32; the teacher
  under ``no_grad``; student and teacher return their block features; every step
  computes all five of their loss terms (triplet with distance-weighted sampling,
  RKD-D, RKD-A, DarkRank, attention on blocks 2-4, the unused ones weighted 0, as their
  loop does), RKD-D and RKD-A in their vectorised forms (rkd.losses.reference); Adam
  (lr 1e-4, weight decay 1e-5); and reads every term with ``.item()`` after each step.
- **ours**: ``rkd.train.fit`` with its defaults for the device: a DataLoader with
  workers as the machine allows (rkd.train.loader.default_num_workers), per-step seeded
  transforms, pinned memory and non-blocking copies, bf16 autocast and channels_last on
  CUDA, the teacher under inference_mode, the loss read every 10 steps on CUDA (every
  step on the CPU); rkd.losses' RKD-D and RKD-A.

Time: after --warmup steps (worker start, cudnn autotuning), --steps steps, from the
wall clock (each loop reads its losses on the host, which synchronises the device).
Loss check: on one fixed batch (centre crops) and the same initial weights, the first
loss of each form is printed and must agree within 1e-4 (fp32) or 3e-2 (bf16) relative.

    .venv/bin/python benchmarks/bench_train_step.py --device cpu --shape small
    .venv/bin/python benchmarks/bench_train_step.py --device cuda                 # paper shape
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import rkd.pin  # noqa: E402,F401  (before torch: the CPU pin, as stand-in runs have it)
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

from _images import make_jpeg_tree  # noqa: E402
from _results import command_line, write_results  # noqa: E402
from rkd import models  # noqa: E402
from rkd.data import ImageListDataset, MPerClassSampler  # noqa: E402
from rkd.data.transforms import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from rkd.distill import Distiller  # noqa: E402
from rkd.losses.individual import attention_loss  # noqa: E402
from rkd.losses.metric import DarkRankLoss, TripletLoss  # noqa: E402
from rkd.losses.reference import authors_rkd_angle, authors_rkd_distance  # noqa: E402
from rkd.losses.terms import TermContext  # noqa: E402
from rkd.methods import get_method  # noqa: E402
from rkd.runtime import seed_everything  # noqa: E402
from rkd.train import TrainConfig, fit  # noqa: E402
from rkd.train.step import lean_models, resolve_step_options  # noqa: E402

#: name -> (input size, resize, batch, images per class in the tree, classes)
SHAPES = {
    "paper": dict(crop=224, resize=256, batch=128, classes=64, per_class=8),
    "small": dict(crop=64, resize=72, batch=32, classes=16, per_class=8),
}
TAPS = ("block2", "block3", "block4")


def build_models(seed: int, taps: tuple[str, ...]):
    torch.manual_seed(seed)
    student = models.build_model("resnet18", embedding_dim=128, normalize=False, taps=taps)
    teacher = models.build_model("resnet50", embedding_dim=512, normalize=True, taps=taps)
    teacher.eval().requires_grad_(False)
    return student, teacher


# ----------------------------------------------------------------------------- the authors' loop


class NPairsLikeSampler:
    """Their batch sampler's behaviour: every batch visits the classes in a random order
    (Python's global ``random``) and takes up to m images of each until it is full."""

    def __init__(self, labels, batch_size: int, m: int, batches: int):
        self.by_class: dict[int, list[int]] = {}
        for index, label in enumerate(labels):
            self.by_class.setdefault(int(label), []).append(index)
        self.batch_size, self.m, self.batches = batch_size, m, batches

    def __len__(self):
        return self.batches

    def __iter__(self):
        for _ in range(self.batches):
            batch: list[int] = []
            for label in random.sample(list(self.by_class), k=len(self.by_class)):
                members = self.by_class[label]
                batch += random.sample(members, k=min(self.m, len(members)))
                if len(batch) >= self.batch_size:
                    break
            yield batch[: self.batch_size]


def authors_transform(shape) -> v2.Compose:
    return v2.Compose([v2.Resize((shape["resize"], shape["resize"])), v2.RandomCrop(shape["crop"]),
                       v2.RandomHorizontalFlip(), v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])


class AuthorsStep:
    """One training step as their loop does it (see the module docstring)."""

    def __init__(self, student, teacher, device):
        self.student, self.teacher, self.device = student.to(device), teacher.to(device), device
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, -1, 1, 1)
        self.triplet = TripletLoss(margin=0.2)
        self.darkrank = DarkRankLoss(alpha=2.0, beta=3.0, k=4)
        self.optimizer = torch.optim.Adam(student.parameters(), lr=1e-4, weight_decay=1e-5)
        self.ratios = {"triplet": 0.0, "dist": 1.0, "angle": 2.0, "dark": 0.0, "at": 0.0}

    def losses(self, images, labels):
        images = (images - self.mean) / self.std
        with torch.no_grad():
            t = self.teacher(images)
        s = self.student(images)
        e, t_e = s["embedding"], t["embedding"]
        return {
            "triplet": self.ratios["triplet"] * self.triplet(e, labels),
            "dist": self.ratios["dist"] * authors_rkd_distance(e, t_e),
            "angle": self.ratios["angle"] * authors_rkd_angle(e, t_e),
            "dark": self.ratios["dark"] * self.darkrank(e, t_e),
            "at": self.ratios["at"] * attention_loss([s[b] for b in TAPS], [t[b] for b in TAPS]),
        }

    def __call__(self, images, labels):
        images, labels = images.to(self.device), labels.to(self.device)  # their blocking .cuda()
        losses = self.losses(images, labels)
        loss = sum(losses.values())
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        values = [v.item() for v in losses.values()] + [loss.item()]  # their per-step read-out
        values += [v.item() for v in losses.values()]  # and again for the progress bar's text
        return values[-1]


def run_authors(dataset_paths, labels, shape, args, device) -> tuple[float, list[float]]:
    seed_everything(0)
    student, teacher = build_models(0, TAPS)
    step = AuthorsStep(student.train(), teacher, device)
    dataset = ImageListDataset(dataset_paths, labels, [str(c) for c in sorted(set(labels))],
                               transform=authors_transform(shape))
    sampler = NPairsLikeSampler(labels, shape["batch"], m=5, batches=args.warmup + args.steps)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=8,
                        pin_memory=torch.device(device).type == "cuda")
    times = []
    for images, batch_labels in loader:
        step(images, batch_labels)
        times.append(time.perf_counter())
    return shape["batch"] * args.steps / (times[-1] - times[args.warmup - 1]), times


# ----------------------------------------------------------------------------- ours


def ours_distiller(seed: int):
    student, teacher = build_models(seed, ())
    method = get_method("RKD-DA", task="metric")
    return Distiller(student, teacher, method, TermContext.from_models(student, teacher))


def ours_transform(shape) -> v2.Compose:
    return v2.Compose([v2.Resize((shape["resize"], shape["resize"])), v2.RandomCrop(shape["crop"]),
                       v2.RandomHorizontalFlip(), v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def run_ours(dataset_paths, labels, shape, args, device) -> tuple[float, dict]:
    seed_everything(0)
    distiller = ours_distiller(0)
    dataset = ImageListDataset(dataset_paths, labels, [str(c) for c in sorted(set(labels))],
                               transform=ours_transform(shape))
    sampler = MPerClassSampler(labels, m=4, batch_size=shape["batch"], seed=0)
    options = resolve_step_options(device)
    warmup = -(-args.warmup // options.check_every) * options.check_every  # a step where the losses are read
    reported: dict[int, float] = {}
    fit(distiller, dataset, sampler, TrainConfig(steps=warmup + args.steps, lr=1e-4, weight_decay=1e-5),
        device=device, progress=False, on_step=lambda done, losses: reported.setdefault(done, time.perf_counter()))
    seconds = reported[warmup + args.steps] - reported[warmup]
    from rkd.train.loader import default_num_workers

    info = {"num_workers": default_num_workers(torch.device(device)), "precision": options.precision,
            "channels_last": options.channels_last, "check_every": options.check_every, "warmup_steps": warmup}
    return shape["batch"] * args.steps / seconds, info


# ----------------------------------------------------------------------------- equal losses


def loss_check(dataset_paths, labels, shape, device) -> tuple[float, float, float]:
    """(authors' loss, ours, tolerance) on one fixed batch from the same initial weights."""
    transform = v2.Compose([v2.Resize((shape["resize"], shape["resize"])), v2.CenterCrop(shape["crop"]),
                            v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
    dataset = ImageListDataset(dataset_paths, labels, [str(c) for c in sorted(set(labels))], transform=transform)
    batch = [dataset[i] for i in range(min(shape["batch"], len(dataset)))]
    images = torch.stack([image for image, _ in batch]).to(device)
    batch_labels = torch.tensor([label for _, label in batch], device=device)
    student, teacher = build_models(0, TAPS)
    authors = AuthorsStep(student.train(), teacher, device)
    with torch.no_grad():
        authors_loss = float(sum(authors.losses(images, batch_labels).values()))
    distiller = ours_distiller(0).to(device).train()
    options = resolve_step_options(device)
    normalised = (images - authors.mean) / authors.std
    with lean_models(distiller, options), torch.no_grad():
        ours_loss = float(sum(distiller(normalised, batch_labels).values()))
    return authors_loss, ours_loss, (3e-2 if options.autocast_dtype is not None else 1e-4)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--shape", choices=sorted(SHAPES), default=None,
                        help="paper (ResNet18/50, 224x224, batch 128; default on CUDA) or small (64x64, batch 32)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 40 paper, 6 small)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed first steps (default: 10 paper, 2 small)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--root", default=None, help="where to write the JPEG tree (default: a temporary folder)")
    parser.add_argument("--results-dir", default=None,
                        help="where to write the JSON figures (default: benchmarks/results)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch.cuda.is_available() is False")
    args.shape = args.shape or ("paper" if device.type == "cuda" else "small")
    shape = SHAPES[args.shape]
    args.steps = args.steps or (40 if args.shape == "paper" else 6)
    args.warmup = args.warmup or (10 if args.shape == "paper" else 2)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # both loops: the authors' code leaves cudnn's default
    with tempfile.TemporaryDirectory() as scratch:
        paths, labels = make_jpeg_tree(Path(args.root or scratch), shape["classes"], shape["per_class"])
        print(f"shape {args.shape}: ResNet18 student / ResNet50 teacher, RKD-DA, {shape['crop']}x{shape['crop']}, "
              f"batch {shape['batch']}, {len(paths)} JPEGs 500x375; device {device}, torch {torch.__version__}, "
              f"{torch.get_num_threads()} torch threads; {args.warmup} warm-up + {args.steps} timed steps")
        authors_loss, ours_loss, tolerance = loss_check(paths, labels, shape, device)
        relative = abs(ours_loss - authors_loss) / abs(authors_loss)
        print(f"loss on one fixed batch, same weights: authors {authors_loss:.6f}, ours {ours_loss:.6f}, "
              f"relative difference {relative:.2e} (tolerance {tolerance:g})")
        if relative > tolerance:
            raise SystemExit("the two loops do not compute the same loss")
        authors_rate, _ = run_authors(paths, labels, shape, args, device)
        print(f"  authors: {authors_rate:8.2f} images/s (8 workers, fp32, no_grad teacher)", flush=True)
        ours_rate, info = run_ours(paths, labels, shape, args, device)
        print(f"  ours:    {ours_rate:8.2f} images/s ({info['num_workers']} workers, {info['precision']}, "
              f"channels_last={info['channels_last']}, losses read every {info['check_every']} steps)")
    ratio = ours_rate / authors_rate
    rows = [
        {"loop": "authors", "images_per_s": authors_rate, "num_workers": 8, "precision": "fp32",
         "first_loss": authors_loss},
        {"loop": "ours", "images_per_s": ours_rate, **info, "first_loss": ours_loss},
    ]
    path = write_results("train_step", str(device), rows,
                         {"ratio_ours_authors_images_per_s": ratio, "loss_relative_difference": relative},
                         directory=args.results_dir,
                         command=command_line([__file__, *(sys.argv[1:] if argv is None else argv)]))
    print(f"wrote {path}")
    print(f"ratio ours/authors images/s: {ratio:.2f}")


if __name__ == "__main__":
    main()
