"""The build copy of the book's sources: the book is built from it, never from the checkout.

``python -m rkd.book.assemble --notebooks _build/notebooks/ci --out _build/src`` makes a
fresh folder holding ``_config.yml``, ``_toc.yml``, ``book/`` (without its npm
packages and generated files), ``benchmarks/results/`` (for the performance page),
``results/`` (the results store, for the Fidelity page's tuning section),
``rkd/`` (the sources the method page quotes) and the notebooks from ``--notebooks``
(executed ones for ``make book``, the committed ones for ``make test``). Every
notebook the table of contents names must be there; a missing one is an error that
says which.
"""
from __future__ import annotations

import argparse
import shutil
from collections.abc import Sequence
from pathlib import Path

__all__ = ["assemble", "toc_files", "toc_notebooks"]

_IGNORE_IN_BOOK = shutil.ignore_patterns("node_modules", "_generated", "package.json", "package-lock.json",
                                          ".ipynb_checkpoints", "__pycache__")
_IGNORE_IN_PACKAGE = shutil.ignore_patterns("__pycache__", "*.pyc", "paper_results")


def toc_files(toc_path: Path) -> list[str]:
    """Every file the table of contents names (root first), in its order."""
    import yaml

    toc_path = Path(toc_path)
    if not toc_path.is_file():
        return []
    files: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            for key in ("root", "file"):
                if isinstance(node.get(key), str):
                    files.append(node[key])
            for value in node.values():
                if isinstance(value, (list, dict)):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(yaml.safe_load(toc_path.read_text()))
    return files


def toc_notebooks(toc: Path) -> list[str]:
    """The notebook files the table of contents names, e.g. ``notebooks/table1_x.ipynb``."""
    names = [name for name in toc_files(toc) if name.startswith("notebooks/")]
    return [name if name.endswith(".ipynb") else name + ".ipynb" for name in names]


def assemble(checkout: Path, notebooks: Path, out: Path) -> Path:
    """Write the build copy to ``out`` (replacing it) and return ``out``."""
    checkout, notebooks, out = Path(checkout), Path(notebooks), Path(out)
    wanted = toc_notebooks(checkout / "_toc.yml")
    missing = [name for name in wanted if not (notebooks / Path(name).name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"the table of contents names notebooks that {notebooks}/ lacks: {', '.join(missing)}; "
            f"execute them first (make book does) or point --notebooks at the committed notebooks/"
        )
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(checkout / name, out / name)
    shutil.copytree(checkout / "book", out / "book", ignore=_IGNORE_IN_BOOK)
    shutil.copytree(checkout / "rkd", out / "rkd", ignore=_IGNORE_IN_PACKAGE)
    # the benchmarks' figures (the performance page) and the results store (the Fidelity
    # page's tuning section), where the rkd extension's configuration looks for them
    for results in (Path("benchmarks") / "results", Path("results")):
        if (checkout / results).is_dir():
            shutil.copytree(checkout / results, out / results)
    (out / "notebooks").mkdir()
    for name in wanted:
        shutil.copy2(notebooks / Path(name).name, out / name)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", type=Path, default=Path("."), help="the repository (default: .)")
    parser.add_argument("--notebooks", type=Path, required=True, help="folder of the notebooks to publish")
    parser.add_argument("--out", type=Path, required=True, help="the build copy to (re)create")
    args = parser.parse_args(argv)
    try:
        out = assemble(args.checkout, args.notebooks, args.out)
    except FileNotFoundError as error:
        raise SystemExit(f"assemble: {error}") from None
    print(f"assemble: book sources for the build in {out} (notebooks from {args.notebooks})")


if __name__ == "__main__":
    main()
