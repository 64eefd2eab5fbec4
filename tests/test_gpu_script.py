"""``benchmarks/gpu.sh --cpu``: the GPU benchmark script's steps at tiny sizes on the CPU, and
the JSON of figures it writes (the GPU run itself needs the H200 image)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.sh"


@pytest.mark.slow
def test_gpu_script_cpu_path_writes_the_figures(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    out = tmp_path / "out"
    run = subprocess.run(
        ["bash", str(SCRIPT), "--cpu", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    figures = json.loads((out / "figures.json").read_text())
    assert figures["mode"] == "cpu" and figures["model_flops_per_step"] == 6 * 100 * 15_000
    assert [r["members"] for r in figures["sweep"]] == [1, 2]
    for row in figures["sweep"]:
        assert row["model_steps_per_s"] > 0 and row["bytes_per_member"] > 0
        flops = row["model_steps_per_s"] * figures["model_flops_per_step"]
        assert row["percent_of_h200_float32"] == pytest.approx(100 * flops / 67e12)
        assert row["sweep_over_plain_loop"] > 0
    assert [r["optimizer"] for r in figures["optimizers"]] == ["sgd", "momentum"]
    assert all(r["bytes_ratio"] == pytest.approx(1.0) for r in figures["optimizers"])
    assert figures["linearize"]["rates"]["max_abs_diff"] < 1e-9


def test_gpu_script_needs_an_output_folder():
    run = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "usage" in run.stderr
