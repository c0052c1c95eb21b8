"""A real ``evo-rl train`` process: paused and resumed by ``evo-rl pause`` /
``evo-rl resume``, then stopped by Ctrl-C (SIGINT), which saves a checkpoint."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time

from conftest import TINY_TRAIN

from evo_rl.cli import main
from evo_rl.train.checkpoint import CheckpointManager
from evo_rl.train.run import resolve_run

# the shared tiny run, trained until stopped, with the plain dashboard whose lines the test reads
SMALL = [*TINY_TRAIN, "train.eval_every_minutes=60", "train.total_steps=1000000000", "train.dashboard=plain"]
STEPS = re.compile(r"steps=(\d+)")


class Output:
    """Collects a process's output lines in a background thread."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pred, start: int = 0, timeout: float = 90.0) -> int:
        """Index of the first line from ``start`` on that satisfies ``pred``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i in range(start, len(self.lines)):
                if pred(self.lines[i]):
                    return i
            time.sleep(0.05)
        raise AssertionError("timed out; output so far:\n" + "\n".join(self.lines[-40:]))


def _steps(line: str) -> int | None:
    m = STEPS.search(line)
    return int(m.group(1)) if m else None


def test_pause_resume_and_ctrl_c_in_a_real_process(tmp_path):
    cmd = [sys.executable, "-c", "import sys; from evo_rl.cli import main; sys.exit(main())"]
    cmd += ["train", "--name", "live", f"train.runs_dir={tmp_path}", *SMALL]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    out = Output(proc)
    try:
        out.wait_for(lambda s: (_steps(s) or 0) > 0)
        assert main(["pause", "live", "--runs-dir", str(tmp_path)]) == 0
        i = out.wait_for(lambda s: s.endswith("PAUSED"))
        paused_at = _steps(out.lines[i])
        time.sleep(1.5)  # several log intervals: nothing may move while paused
        during = [_steps(s) for s in out.lines[i + 1 :] if _steps(s) is not None]
        assert during == [], during
        assert main(["resume", "live", "--runs-dir", str(tmp_path)]) == 0
        j = out.wait_for(lambda s: s.endswith("resumed"), start=i)
        out.wait_for(lambda s: (_steps(s) or 0) > paused_at, start=j)  # continues from where it paused
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=90) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    out._thread.join(timeout=5)
    text = "\n".join(out.lines)
    assert "stopping: SIGINT" in text and "checkpoint saved" in text
    run = resolve_run("live", tmp_path)
    ck = CheckpointManager(run.checkpoints_dir).load_latest()
    assert ck.state["env_steps"] > paused_at and ck.replay_path is not None
    assert not run.trainer_path.exists()
