"""Killing a Ray actor while it serves a call: the helper the fault tests share."""

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil
import ray


def actor_pid(actor) -> int:
    """The process id of ``actor`` (asked of the actor itself)."""
    return ray.get(actor.__ray_call__.remote(lambda _: os.getpid()))


def kill_while_busy(actor, call: Callable[[], Any], cpu_seconds: float = 0.2) -> tuple[Any, int]:
    """Run ``call()`` in a thread; once ``actor``'s process has used ``cpu_seconds`` more CPU
    time (it is serving the call), kill the process (Ray may restart it). Returns ``call``'s
    result and the killed process id."""
    pid = actor_pid(actor)
    result: dict[str, Any] = {}
    caller = threading.Thread(target=lambda: result.setdefault("value", call()))
    caller.start()
    process = psutil.Process(pid)
    start = sum(process.cpu_times()[:2])
    while sum(process.cpu_times()[:2]) - start < cpu_seconds:
        assert caller.is_alive(), "the call ended before the actor got busy"
        time.sleep(0.01)
    ray.kill(actor, no_restart=False)
    caller.join(timeout=300)
    assert "value" in result, "the call did not come back after the kill"
    return result["value"], pid
