"""Faults on purpose: a sweep killed with SIGKILL, damaged and edited files, a second writer,
the wrong output directory, bad command lines. Each guarantee of the README's section "Sweeps
that never lose or mix results" is a test here (the multi-process and multi-device ones are in
test_multiprocess.py and tests/multidevice).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sweep_fixtures import (
    CLI_FLAGS,
    CONFIG,
    assert_same_results,
    cli_command,
    environment,
    sweep_args,
    wait_for,
    write_data_module,
)

from gdyn_jax import cli, files
from gdyn_jax.sweep import checkpoint, load_results, outdir, run_sweep, storage

# The in-process sweeps of this file (CONFIG): 4 members, 4 blocks of 10 steps.
GRID = {"learning_rate": [0.02, 0.1], "beta": [0.0, 0.9]}
OTHER_GRID = {"learning_rate": [0.05], "beta": [0.0, 0.9]}
KW = dict(member_group=2, checkpoint_every=10, progress=False)


class _Stop(Exception):
    pass


def _interrupted(out: Path, grid=GRID, after: int = 2, **kw) -> None:
    """A sweep into ``out`` stopped after ``after`` blocks: its checkpoint stays."""

    def stop(info):
        if info["block"] + 1 == after:
            raise _Stop

    with pytest.raises(_Stop):
        run_sweep(CONFIG, grid, 1, out=out, callback=stop, **{**KW, **kw})
    assert checkpoint.path(out).exists() and not (out / "results.npz").exists()


@pytest.fixture(scope="module")
def reference(mnist1d_data_dir):
    return run_sweep(CONFIG, GRID, 1, **KW)


def _gdyn(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code: int, err: str, pattern: str) -> None:
    import re

    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert re.search(pattern, lines[0]), lines[0]
    assert "pickle" not in err


# ---------------------------------------------------------------------------------------------
# Kill
# ---------------------------------------------------------------------------------------------


def test_sigkilled_sweep_rerun_resumes_bit_for_bit(tmp_path, capsys, monkeypatch):
    """`gdyn sweep` killed with SIGKILL mid-run; the same command again takes over its stale
    lock, resumes from its checkpoint (the default) and ends equal to an uninterrupted run."""
    work = write_data_module(tmp_path)
    monkeypatch.chdir(work)
    argv = sweep_args(1000, 50)
    proc = subprocess.Popen(
        cli_command(*argv, "--out", "killed"),
        cwd=work,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(work / "killed" / "checkpoint" / "state.npz", [proc])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert not (work / "killed" / "results.npz").exists(), "finished before the kill"
    lock = json.loads((work / "killed" / outdir.LOCK_FILE).read_text())
    assert lock["pid"] == proc.pid  # left behind by the dead process

    assert cli.main([*argv, "--out", "uninterrupted"]) == 0
    code, out, err = _gdyn(capsys, *argv, "--out", "killed")
    assert code == 0, err
    assert f"took over the lock of a sweep that is no longer running (pid {proc.pid}" in err
    assert "resuming killed at chunk 1 of 1, step " in err
    assert_same_results(load_results(work / "killed"), load_results(work / "uninterrupted"))
    assert not (work / "killed" / "checkpoint").exists()
    assert not (work / "killed" / outdir.LOCK_FILE).exists()


def test_interrupted_sweep_resumes_by_default_then_returns_its_results(tmp_path, reference):
    _interrupted(tmp_path)
    blocks = []
    ds = run_sweep(CONFIG, GRID, 1, out=tmp_path, callback=lambda i: blocks.append(i), **KW)
    assert [b["block"] for b in blocks] == [2, 3]  # the two blocks left
    assert_same_results(ds, reference)
    again = run_sweep(CONFIG, GRID, 1, out=tmp_path, callback=lambda i: blocks.append(i), **KW)
    assert len(blocks) == 2 and again.identical(load_results(tmp_path))  # nothing trained


# ---------------------------------------------------------------------------------------------
# Wrong directory
# ---------------------------------------------------------------------------------------------


def test_results_of_another_sweep_are_refused_unless_overwrite(tmp_path, reference):
    run_sweep(CONFIG, OTHER_GRID, 1, out=tmp_path, **KW)
    before = (tmp_path / "results.npz").read_bytes()
    with pytest.raises(
        ValueError, match=r"^out: .*results.npz holds the results of another sweep \(grid"
    ):
        run_sweep(CONFIG, GRID, 1, out=tmp_path, **KW)
    assert (tmp_path / "results.npz").read_bytes() == before
    ds = run_sweep(CONFIG, GRID, 1, out=tmp_path, overwrite=True, **KW)
    assert_same_results(ds, reference)
    assert_same_results(load_results(tmp_path), reference)


def test_checkpoint_of_another_sweep_is_refused_unless_overwrite(tmp_path, reference):
    _interrupted(tmp_path, OTHER_GRID)
    before = checkpoint.path(tmp_path).read_bytes()
    with pytest.raises(
        ValueError, match=r"^out: .*state.npz is a checkpoint of another sweep \(grid"
    ):
        run_sweep(CONFIG, GRID, 1, out=tmp_path, **KW)
    for other in ({"seeds": 2}, {"member_group": 1}):  # the identity is more than the grid
        with pytest.raises(ValueError, match=r"another sweep \((seeds|member_group)"):
            run_sweep(CONFIG, OTHER_GRID, out=tmp_path, **{**KW, "seeds": 1, **other})
    assert checkpoint.path(tmp_path).read_bytes() == before
    assert_same_results(run_sweep(CONFIG, GRID, 1, out=tmp_path, overwrite=True, **KW), reference)


def test_resume_flags_and_layout(tmp_path):
    with pytest.raises(ValueError, match="^resume: .* holds no checkpoint or results"):
        run_sweep(CONFIG, GRID, 1, out=tmp_path / "empty", resume=True, **KW)
    _interrupted(tmp_path)
    with pytest.raises(ValueError, match="^resume: .* holds a checkpoint of this sweep"):
        run_sweep(CONFIG, GRID, 1, out=tmp_path, resume=False, **KW)
    with pytest.raises(ValueError, match=r"state.npz: layout.block_intervals: 1 in the check"):
        run_sweep(CONFIG, GRID, 1, out=tmp_path, **{**KW, "checkpoint_every": 20})
    with pytest.raises(ValueError, match=r"state.npz: layout.chunk: 4 in the checkpoint, 2 in"):
        run_sweep(CONFIG, GRID, 1, out=tmp_path, chunk_size=2, **KW)
    with pytest.raises(ValueError, match="^overwrite: "):
        run_sweep(CONFIG, GRID, 1, out=tmp_path, resume=True, overwrite=True, **KW)


# ---------------------------------------------------------------------------------------------
# Damaged and edited files
# ---------------------------------------------------------------------------------------------

DAMAGE = {
    "empty": lambda data: b"",
    "truncated": lambda data: data[: len(data) // 2],
    "random bytes": lambda data: np.random.default_rng(0).bytes(len(data)),
    "one byte flipped": lambda data: (
        data[: len(data) // 2] + bytes([data[len(data) // 2] ^ 1]) + data[len(data) // 2 + 1 :]
    ),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_results_are_one_line_errors_through_the_cli(tmp_path, capsys, damage, reference):
    argv = [*CLI_FLAGS, "--member-group", "2", "--checkpoint-every", "10", "--out", str(tmp_path)]
    assert _gdyn(capsys, *argv)[0] == 0
    results = tmp_path / "results.npz"
    results.write_bytes(DAMAGE[damage](results.read_bytes()))
    for extra in ([], ["--resume"]):
        code, _, err = _gdyn(capsys, *argv, *extra)
        _one_line_error(code, err, rf"^gdyn sweep: error: out: {results}: ")
    with pytest.raises(ValueError, match=f"^{results}: ") as info:
        load_results(tmp_path)
    assert "pickle" not in str(info.value)


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_checkpoints_are_one_line_errors(tmp_path, damage):
    _interrupted(tmp_path)
    state = checkpoint.path(tmp_path)
    state.write_bytes(DAMAGE[damage](state.read_bytes()))
    with pytest.raises(ValueError, match=f"^out: {state}: .*--overwrite to discard it$") as info:
        run_sweep(CONFIG, GRID, 1, out=tmp_path, **KW)
    assert "\n" not in str(info.value) and "pickle" not in str(info.value)


def _edit_header(state: Path, edit, recompute_digest: bool = True) -> None:
    """Rewrites the checkpoint's header with ``edit(meta)`` applied: with its digest (and the
    array checksums) recomputed, as a deliberate edit would, or with the old digest."""
    meta, arrays = storage.read(state, checkpoint.KIND)
    edit(meta)
    if recompute_digest:
        storage.write(state, checkpoint.KIND, meta, arrays)
        return
    with zipfile.ZipFile(state) as z:
        members = {n: z.read(n) for n in z.namelist()}
    header = json.loads(np.frombuffer(members["__header__.npy"][128:], np.uint8).tobytes())
    header["meta"] = meta
    raw = json.dumps(header, sort_keys=True).encode()
    with zipfile.ZipFile(state, "w") as z:
        for name, data in members.items():
            if name == "__header__.npy":
                with z.open(name, "w") as f:
                    np.lib.format.write_array(f, np.frombuffer(raw, np.uint8))
            else:
                z.writestr(name, data)


def _set(path: str, value):
    def edit(meta):
        *parents, last = path.split(".")
        target = meta
        for key in parents:
            target = target[key]
        target[last] = value(target[last]) if callable(value) else value

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set("position.block", 99), r"position.block: 99 is outside \[1, 4\]"),
        (_set("position.block", 0), r"position.block: 0 is outside \[1, 4\]"),
        (_set("position.chunk", 1), r"position.chunk: 1 is outside \[0, 0\]"),
        (_set("position.block", True), r"position.block: expected an integer, found True"),
        (_set("layout.num_blocks", 8), r"layout.num_blocks: 8 in the checkpoint, 4 in this run"),
        (_set("identity.versions.jax", "0.0.1"), r"another sweep \(versions.jax: \"0.0.1\""),
        (_set("identity.seeds", 2), r"another sweep \(seeds: 2 here, 1 now"),
        (_set("leaves", lambda v: v[:-1]), r"leaf/\d+: not a leaf or buffer of the header"),
    ],
    ids=["block 99", "block 0", "chunk", "bool", "layout", "version", "seeds", "leaves"],
)
def test_edited_checkpoint_headers_are_refused(tmp_path, edit, message):
    """The issue's case: block=99 was accepted (exit 0, "0 diverged", two members NaN)."""
    _interrupted(tmp_path)
    _edit_header(checkpoint.path(tmp_path), edit)
    with pytest.raises(ValueError, match=f"^out: {checkpoint.path(tmp_path)}:? .*{message}"):
        run_sweep(CONFIG, GRID, 1, out=tmp_path, **KW)


def test_a_header_edited_without_its_digest_and_a_swapped_leaf_are_refused(tmp_path):
    _interrupted(tmp_path)
    state = checkpoint.path(tmp_path)
    _edit_header(state, _set("position.block", 3), recompute_digest=False)
    with pytest.raises(ValueError, match=r"state.npz: header: checksum mismatch"):
        run_sweep(CONFIG, GRID, 1, out=tmp_path, **KW)
    _interrupted(tmp_path, overwrite=True)
    meta, arrays = storage.read(state, checkpoint.KIND)
    arrays["leaf/00000"] = arrays["leaf/00000"].astype(np.float64)  # a consistent file...
    meta["leaves"][0][1] = "<f8"
    storage.write(state, checkpoint.KIND, meta, arrays)
    with pytest.raises(ValueError, match=r"leaf/00000: float64 .* in the checkpoint, \w+ .* in"):
        run_sweep(CONFIG, GRID, 1, out=tmp_path, **KW)  # ...of another shape of state


# ---------------------------------------------------------------------------------------------
# Concurrent writers and stale locks
# ---------------------------------------------------------------------------------------------

_HOLD_LOCK = """
import sys, time
from pathlib import Path
from gdyn_jax.sweep.outdir import Lock
lock = Lock.acquire(Path(sys.argv[1]))
print("locked", flush=True)
time.sleep(120)
"""


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    return int(proc.stdout)


def test_a_second_writer_is_refused_while_the_first_lives(tmp_path, capsys, mnist1d_data_dir):
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(tmp_path)],
        env=environment(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ValueError, match=rf"^out: {tmp_path} is in use by another sweep "):
            run_sweep(CONFIG, GRID, 1, out=tmp_path, **KW)
        code, _, err = _gdyn(capsys, "sweep", "--grid", "learning_rate=0.1", "--out", str(tmp_path))
        _one_line_error(code, err, rf"in use by another sweep \(pid {holder.pid} on ")
    finally:
        holder.kill()
        holder.wait()
    # Its owner dead, the lock is stale: the next sweep takes it over.
    run_sweep(CONFIG, GRID, 1, out=tmp_path, **KW)
    assert not (tmp_path / outdir.LOCK_FILE).exists()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, caplog):
    tmp_path.mkdir(exist_ok=True)
    pid = _dead_pid()
    record = {"pid": pid, "host": socket.gethostname(), "started": "then"}
    (tmp_path / outdir.LOCK_FILE).write_text(json.dumps(record))
    with caplog.at_level("INFO", logger="gdyn_jax"):
        run_sweep(CONFIG, GRID, 1, out=tmp_path, **KW)
    assert f"no longer running (pid {pid} on {socket.gethostname()}" in caplog.text


@pytest.mark.parametrize("owner", ["dead", "alive", "other host"])
def test_without_flock_the_pid_decides(tmp_path, monkeypatch, owner):
    """On a filesystem without flock, a lock of a dead process on this host is taken over;
    one of a live process, or of another host (which cannot be checked), is refused."""
    monkeypatch.setattr(outdir, "_flock", lambda fd: None)
    pid = {"dead": _dead_pid(), "alive": os.getppid(), "other host": 1}[owner]
    host = "elsewhere.example" if owner == "other host" else socket.gethostname()
    (tmp_path / outdir.LOCK_FILE).write_text(json.dumps({"pid": pid, "host": host}))
    if owner == "dead":
        with outdir.Lock.acquire(tmp_path) as lock:
            assert lock.stale["pid"] == pid
            assert json.loads((tmp_path / outdir.LOCK_FILE).read_text())["pid"] == os.getpid()
        assert not (tmp_path / outdir.LOCK_FILE).exists()
    else:
        with pytest.raises(ValueError, match=rf"in use .*pid {pid} on {host}.*; if it is not"):
            outdir.Lock.acquire(tmp_path)


# ---------------------------------------------------------------------------------------------
# Modes of the files written
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["umask 022", "umask 027"])
def test_output_files_get_the_usual_mode(tmp_path, umask, mnist1d_data_dir):
    import matplotlib.pyplot as plt

    old = os.umask(umask)
    try:
        _interrupted(tmp_path / "sweep")
        ckpt_mode = checkpoint.path(tmp_path / "sweep").stat().st_mode & 0o777
        run_sweep(CONFIG, GRID, 1, out=tmp_path / "sweep", **KW)
        files.write_text(tmp_path / "report.md", "# report\n")
        fig = plt.figure()
        files.save_figure(fig, tmp_path / "figure.png")
        plt.close(fig)
        assert cli.main(["reproduce", "optimizer_memory", "--tiny", "--no-progress",
                         "--out", str(tmp_path / "reproduce")]) == 0  # fmt: skip
    finally:
        os.umask(old)
    written = [tmp_path / "sweep" / "results.npz", tmp_path / "report.md", tmp_path / "figure.png"]
    written += [p for p in (tmp_path / "reproduce").rglob("*") if p.is_file()]
    assert len(written) >= 7  # index.md, index.json, report.md, summary.json, a figure
    modes = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in written}
    assert set(modes.values()) == {oct(0o666 & ~umask)}, modes
    assert ckpt_mode == 0o666 & ~umask
    assert not list(tmp_path.rglob("*.tmp"))


# ---------------------------------------------------------------------------------------------
# Bad command lines: one line naming the argument, status 2, before any training
# ---------------------------------------------------------------------------------------------


def _bad_cases(tmp: Path) -> list[tuple[list[str], str]]:
    a_file = tmp / "a_file"
    a_file.write_text("x")
    config = tmp / "config.json"
    config.write_text(json.dumps({"batch_size": 12.5, "grid": {"learning_rate": [0.1]}}))
    sweep = ["sweep", "--grid", "learning_rate=0.1", "--no-progress"]
    unprepared = [*sweep, "--dataset", "mnist", "--model", "cnn2d"]  # loading would fail
    analyze = ["analyze", "sgd", "--hp", "learning_rate=0.1", "--curvature", "1"]
    return [
        ([*unprepared, "--out", str(a_file)], rf"out: {a_file} exists and is not a directory"),
        ([*unprepared, "--out", str(a_file / "sub")], rf"out: cannot create {a_file}/sub"),
        ([*sweep, "--config", str(tmp), "--out", str(tmp / "o")], "config: .* is a directory"),
        ([*sweep, "--data-dir", str(a_file), "--out", str(tmp / "o")], "data_dir: .* not a dir"),
        ([*sweep, "--steps", "2147483648", "--out", str(tmp / "o")], "steps: expected an integ"),
        (
            [
                *sweep,
                "--schedule",
                "warmup_cosine",
                "--warmup-steps",
                "1000",
                "--steps",
                "100",
                "--eval-every",
                "100",
                "--out",
                str(tmp / "o"),
            ],
            r"warmup_steps: expected fewer than steps \(100\)",
        ),  # fmt: skip
        (["sweep", "--config", str(config), "--out", str(tmp / "o")], "batch_size: .* got 12.5"),
        (
            [
                *sweep,
                "--steps",
                "2000000000",
                "--eval-every",
                "1",
                "--seeds",
                "64",
                "--out",
                str(tmp / "o"),
            ],
            "eval_every: 2000000001 evaluations of 64 members need at least 1024.0 GB",
        ),
        (["reproduce", "optimizer_memory", "--out", str(a_file)], "out: .* is not a directory"),
        ([*analyze, "--plot", str(tmp / "out.xyz")], r"--plot: expected a file name ending in"),
        ([*analyze, "--plot", str(tmp)], r"--plot: .* is a directory"),
        ([*analyze, "--plot", str(tmp / "no" / "a.png")], r"--plot: directory .* does not exist"),
        (
            ["analyze", "sgd", "--hp", "learning_rate=1e308", "--curvature", "1"],
            r"--hp: learning_rate: 1e\+308 is too large",
        ),
    ]


def test_bad_command_lines_are_one_line_errors_before_training(tmp_path, capsys):
    for argv, pattern in _bad_cases(tmp_path):
        code, out, err = _gdyn(capsys, *argv)
        _one_line_error(code, err, f"^gdyn {argv[0]}: error: {pattern}")
        assert not out
    assert not (tmp_path / "no").exists() and not list(tmp_path.glob("*.png"))


def test_output_into_a_closed_pipe_ends_quietly():
    """`gdyn list | head -3`: the reader goes away before the output is written."""
    proc = subprocess.Popen(
        cli_command("list"),
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGPIPE, err.decode()
    assert err == b""
