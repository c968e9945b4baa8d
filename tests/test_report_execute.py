"""rkd.report.execute: a kernel that never started is started again; nothing else is retried."""
from __future__ import annotations

import papermill
import pytest

from rkd.report import execute


class _Calls:
    def __init__(self, *outcomes):
        self.outcomes = list(outcomes)
        self.count = 0

    def __call__(self, *args, **kwargs):
        self.count += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome


def test_a_kernel_that_did_not_start_is_started_again(monkeypatch, capsys):
    calls = _Calls(RuntimeError("Kernel didn't respond in 60 seconds"), None)
    monkeypatch.setattr(papermill, "execute_notebook", calls)
    execute.main(["in.ipynb", "out.ipynb", "-p", "scale", "ci"])
    assert calls.count == 2
    assert "did not start" in capsys.readouterr().err


def test_a_failing_cell_is_not_retried(monkeypatch):
    calls = _Calls(papermill.PapermillExecutionError(3, 4, "", "ValueError", "bad", []))
    monkeypatch.setattr(papermill, "execute_notebook", calls)
    with pytest.raises(papermill.PapermillExecutionError):
        execute.execute("in.ipynb", "out.ipynb", {"scale": "ci"})
    assert calls.count == 1


def test_the_third_failed_start_is_reported(monkeypatch):
    failure = RuntimeError("Kernel died before replying to kernel_info")
    calls = _Calls(failure, failure, failure)
    monkeypatch.setattr(papermill, "execute_notebook", calls)
    with pytest.raises(RuntimeError, match="Kernel died"):
        execute.execute("in.ipynb", "out.ipynb", {})
    assert calls.count == execute.ATTEMPTS


def test_parameters_are_read_as_papermills_command_line_reads_them(monkeypatch):
    seen = {}
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: seen.update(k["parameters"]))
    execute.main(["in.ipynb", "out.ipynb", "-p", "scale", "ci", "-p", "progress", "False", "-p", "cache_dir", "None",
                  "-p", "steps", "3", "-p", "lr", "0.5"])
    assert seen == {"scale": "ci", "progress": False, "cache_dir": None, "steps": 3, "lr": 0.5}


def test_the_nbval_plugin_wraps_nbvals_own_kernel_start():
    import nbval.kernel

    original = getattr(nbval.kernel.start_new_kernel, "__wrapped__", nbval.kernel.start_new_kernel)
    nbval.kernel.start_new_kernel = original
    try:
        import importlib
        import sys

        sys.modules.pop("tests.nbval_kernel_retry", None)  # patch afresh, even if pytest loaded it with -p
        importlib.invalidate_caches()
        import tests.nbval_kernel_retry  # noqa: F401  (patches on import)

        wrapped = nbval.kernel.start_new_kernel
        assert wrapped.__wrapped__ is original  # nbval's, which knows its current-env kernel
    finally:
        nbval.kernel.start_new_kernel = original
