"""Two processes on 127.0.0.1 run one sweep together through `gdyn sweep --coordinator`
(``jax.distributed.initialize``, gloo collectives on CPU, two fake CPU devices each): killed
mid-run, the restarted group resumes from the checkpoint and ends equal, bit for bit, to the
same sweep run by this one process on its one device; run again, the group returns the
finished results."""

from __future__ import annotations

import signal
import subprocess

from sweep_fixtures import (
    assert_same_results,
    cli_command,
    environment,
    free_port,
    sweep_args,
    wait_for,
    write_data_module,
)

from gdyn_jax import cli
from gdyn_jax.sweep import checkpoint, load_results

ARGV = sweep_args(600, 50, "--checkpoint-every", "50")  # 12 blocks


def _start_group(work, out: str) -> list[subprocess.Popen]:
    port = free_port()
    return [
        subprocess.Popen(
            cli_command(
                *ARGV,
                "--out",
                out,
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ),
            cwd=work,
            env=environment(JAX_NUM_CPU_DEVICES="2"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]


def _finish(group: list[subprocess.Popen]) -> list[str]:
    """Waits for the group; the stderr of each process."""
    errs = []
    for proc in group:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        errs.append(err)
    return errs


def test_two_processes_killed_and_restarted_equal_one_process(tmp_path, monkeypatch):
    work = write_data_module(tmp_path)
    monkeypatch.chdir(work)
    group = _start_group(work, "group")
    try:
        wait_for(checkpoint.path(work / "group"), group)
    finally:
        # One process dies; the job scheduler then takes the rest of the group down.
        for proc in group:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
    assert not (work / "group" / "results.npz").exists(), "finished before the kill"

    assert cli.main([*ARGV, "--out", "single"]) == 0  # meanwhile, this process alone
    errs = _finish(_start_group(work, "group"))
    assert "took over the lock of a sweep that is no longer running" in errs[0]
    assert "resuming group at chunk 1 of 1, step " in errs[0]
    single, group_results = load_results(work / "single"), load_results(work / "group")
    assert int((single["diverged_at"] >= 0).sum()) > 0
    assert_same_results(group_results, single)

    errs = _finish(_start_group(work, "group"))  # finished: the results, nothing trained
    assert "holds this sweep's results: nothing to train" in errs[0]
    assert load_results(work / "group").identical(group_results)
