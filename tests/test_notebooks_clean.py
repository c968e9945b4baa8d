"""The committed notebooks are clean: what a reader of the book and of a git diff sees.

For every notebook in ``notebooks/``:

- no progress-bar frames in any output (bars belong on the terminal: rkd.progress);
- no warnings in any output, and no stderr stream at all (a kernel's stderr holds
  progress bars and warnings, neither of which belongs in a published notebook);
- no machine paths (``/work/``, ``/home/``, ``.venv/``, ``site-packages`` ...) anywhere
  in the outputs or the notebook's metadata;
- at most 500 KB on disk, images included.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
MAX_BYTES = 500_000

# a tqdm frame: "37%|███▋      | 37/100 [00:01<00:02, 25.1it/s]", or a carriage-return redraw
_PROGRESS = re.compile(r"\d+%\|.*\|\s*\d+/\d+|\d+(\.\d+)?(it/s|s/it)\b|\r(?!\n)")
_WARNING = re.compile(r"\b\w*Warning\b|\bwarnings\.warn\b|^\s*warn(ing)?:", re.IGNORECASE | re.MULTILINE)
_MACHINE_PATH = re.compile(
    r"/work/|/home/|/root/|/Users/|/tmp/|/private/var/|[A-Za-z]:\\\\Users\\\\|\.venv/|site-packages|dist-packages"
)
# binary outputs: a base64 PNG can contain any of the patterns above by chance
_BINARY_MIME = re.compile(r"^(image|video|audio)/(?!svg)")


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _outputs(notebook: dict):
    """(cell index, output) for every output of every code cell."""
    for index, cell in enumerate(notebook["cells"]):
        for output in cell.get("outputs", []):
            yield index, output


def _output_texts(output: dict):
    """(kind, text) for each textual part of an output (binary images skipped)."""
    if output.get("output_type") == "stream":
        yield f"stream {output.get('name')}", _text(output.get("text", ""))
    elif output.get("output_type") == "error":
        yield "error", "\n".join(output.get("traceback", []))
    for mime, value in (output.get("data") or {}).items():
        if not _BINARY_MIME.match(mime):
            yield mime, value if isinstance(value, str) and not isinstance(value, list) else (
                _text(value) if isinstance(value, list) else json.dumps(value))


def _problems(notebook: dict, pattern: re.Pattern, what: str) -> list[str]:
    found = []
    for index, output in _outputs(notebook):
        for kind, text in _output_texts(output):
            match = pattern.search(text)
            if match:
                start = max(0, match.start() - 60)
                found.append(f"cell {index} ({kind}): {what} {text[start:match.end() + 60]!r}")
    return found


@pytest.fixture(params=NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def notebook(request) -> tuple[Path, dict]:
    path = request.param
    return path, json.loads(path.read_text(encoding="utf-8"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found in notebooks/"


def test_no_progress_bar_frames(notebook):
    path, data = notebook
    problems = _problems(data, _PROGRESS, "progress-bar frame")
    assert not problems, f"{path.name}: {len(problems)} outputs hold progress bars; first: {problems[:3]}"


def test_no_warnings_and_no_stderr(notebook):
    path, data = notebook
    stderr = [f"cell {i}: {_text(o.get('text', ''))[:120]!r}" for i, o in _outputs(data)
              if o.get("output_type") == "stream" and o.get("name") == "stderr"]
    warnings = _problems(data, _WARNING, "warning")
    assert not stderr, f"{path.name}: {len(stderr)} stderr outputs; first: {stderr[:3]}"
    assert not warnings, f"{path.name}: {len(warnings)} outputs hold warnings; first: {warnings[:3]}"


def test_no_machine_paths(notebook):
    path, data = notebook
    problems = _problems(data, _MACHINE_PATH, "machine path")
    metadata = json.dumps([data.get("metadata", {})] + [c.get("metadata", {}) for c in data["cells"]])
    match = _MACHINE_PATH.search(metadata)
    if match:
        problems.append(f"metadata: machine path {metadata[max(0, match.start() - 60):match.end() + 60]!r}")
    assert not problems, f"{path.name}: {len(problems)} machine paths; first: {problems[:3]}"


def test_at_most_500_kb(notebook):
    path, _ = notebook
    size = path.stat().st_size
    assert size <= MAX_BYTES, f"{path.name} is {size:,} bytes; at most {MAX_BYTES:,} (500 KB)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_cells_are_the_template(path):
    """The committed notebook's cells are what ``python -m rkd.experiments.notebook`` writes
    (papermill's injected-parameters cell aside): a template change is re-executed and
    committed, not left to drift."""
    from rkd.experiments.notebook import PAGES, notebook

    name = next(name for name, page in PAGES.items() if Path(page).name == path.name)
    committed = json.loads(path.read_text())
    cells = [(c["cell_type"], _text(c["source"])) for c in committed["cells"]
             if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    expected = [(c["cell_type"], _text(c["source"])) for c in notebook(name).cells]
    assert cells == expected, (f"{path.name} differs from its template: run `python -m rkd.experiments.notebook` "
                               f"and re-execute it (make notebooks)")


def test_writing_the_templates_names_an_unknown_page_and_writes_nothing(tmp_path):
    from rkd.experiments.notebook import write_all

    with pytest.raises(ValueError, match=r"no page named tabel3; name some of figure3, .*table3"):
        write_all(tmp_path, only=["table3", "tabel3"])
    assert not list(tmp_path.iterdir())
