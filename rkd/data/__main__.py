"""``python -m rkd.data check|prepare``: is a data root ready, and put an official archive into it.

    python -m rkd.data check DATA_ROOT [DATASET ...] [--no-decode] [--workers N]
    python -m rkd.data prepare DATASET ARCHIVE DATA_ROOT

``check`` prints one line per dataset (ready, or what is missing or wrong and how to
fix it) and exits with status 1 when one is not ready. ``prepare`` verifies the
archive's published checksum, extracts it and puts it in place, or refuses it and
leaves DATA_ROOT unchanged (status 1).
"""
from __future__ import annotations

import argparse
import sys

from rkd.data.check import check_dataset, layout_problems
from rkd.data.prepare import ArchiveError, prepare_archive
from rkd.data.releases import RELEASES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rkd.data", description="Check a data root against the "
                                     "official releases of the paper's datasets, or put an official archive into it.")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="check a data root against the official releases")
    check.add_argument("data_root")
    check.add_argument("datasets", nargs="*", metavar="DATASET",
                       help=f"datasets to check (default: all): {', '.join(RELEASES)}")
    check.add_argument("--no-decode", action="store_true", help="skip decoding every image (much faster)")
    check.add_argument("--workers", type=int, default=None, help="threads that decode images (default: cores, <= 8)")
    prepare = commands.add_parser("prepare", help="extract a downloaded official archive into a data root")
    prepare.add_argument("dataset", choices=list(RELEASES))
    prepare.add_argument("archive")
    prepare.add_argument("data_root")
    return parser


def _check(args) -> int:
    unknown = [name for name in args.datasets if name not in RELEASES]
    if unknown:
        print(f"unknown dataset(s) {', '.join(unknown)}; the paper's datasets are: {', '.join(RELEASES)}",
              file=sys.stderr)
        return 2
    names = args.datasets or list(RELEASES)
    print(f"checking {len(names)} dataset(s) under {args.data_root} against the official releases", flush=True)
    ready = True
    for name in names:
        report = check_dataset(args.data_root, name, decode=not args.no_decode, workers=args.workers)
        print(report.line(), flush=True)
        ready = ready and report.ready
    return 0 if ready else 1


def _prepare(args) -> int:
    try:
        result = prepare_archive(args.dataset, args.archive, args.data_root)
    except ArchiveError as error:
        print(f"refused: {error}", file=sys.stderr)
        return 1
    print(f"verified: {result.verified_by}" if result.verified_by else "verified")
    print("placed: " + ", ".join(map(str, result.placed)))
    if result.left_out:
        print("left out (not part of the layout the readers use): " + ", ".join(result.left_out))
    print(f"terms of use: {RELEASES[args.dataset].terms}")
    remaining = layout_problems(args.dataset, args.data_root)
    if remaining:
        print("still needed: " + " | ".join(remaining))
    else:  # the archive's checksum (or, without one, the check before it was placed) vouches for its images
        print(check_dataset(args.data_root, args.dataset, decode=False).line())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    return _check(args) if args.command == "check" else _prepare(args)


if __name__ == "__main__":
    sys.exit(main())
