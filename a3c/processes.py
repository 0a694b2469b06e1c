"""Stopping local child processes without leaving any behind."""
from __future__ import annotations

import time

STOP_GRACE_SECONDS = 5.0


def stop_processes(procs, grace: float = STOP_GRACE_SECONDS) -> None:
    """Wait up to ``grace`` seconds for processes already asked to stop, then terminate
    and finally kill the ones still running."""
    deadline = time.monotonic() + grace
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
            proc.join(1.0)
        if proc.is_alive():
            proc.kill()
            proc.join()


def exit_cause(code: int) -> str:
    """'exit code 1' or 'signal 9', for a process's exit code."""
    return f"exit code {code}" if code >= 0 else f"signal {-code}"
