"""SIGKILL mid-training, then --resume: the run ends exactly as if it had never been killed (slow: subprocesses).

The trials are the ones `benchmarks/kill_trials.py` runs and tabulates; this test runs ten of them.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_ends_like_an_uninterrupted_run(tmp_path):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "kill_trials.py"
    spec = importlib.util.spec_from_file_location("kill_trials", path)
    kill_trials = importlib.util.module_from_spec(spec)
    sys.modules["kill_trials"] = kill_trials  # its dataclasses look their module up there
    spec.loader.exec_module(kill_trials)
    results = kill_trials.run_trials(trials=10, seed=1, epochs=3, workdir=tmp_path, log=lambda *args: None)
    assert len(results) == 10 and all(r.kills for r in results)  # every trial was killed at least once
    for r in results:
        assert r.resume_ok, r
        assert r.match == {"metrics": True, "weights": True, "summary": True, "clean": True}, r
