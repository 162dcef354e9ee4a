"""Helpers shared by the `tests/test_reliability_*.py` files.

Every child process is started in its own session and its whole process
group is killed when the helper returns (also on timeout or error), so no
test leaves a process behind.
"""

import atexit
import functools
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
EXAMPLE = os.path.join(REPO, "examples", "multiworker_ctl.py")
PYTHON = sys.executable


def child_env(**extra):
    """The environment of a child process: quiet TF, no inherited TF_CONFIG."""
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update({key: str(value) for key, value in extra.items()})
    return env


def run(args, *, timeout, env=None, cwd=None):
    """Run a command bounded by `timeout`; returns `(returncode, output)`.

    The child gets its own process group, which is killed whatever happens.
    On timeout the return code is None.
    """
    proc = subprocess.Popen(
        args, env=child_env() if env is None else env, cwd=cwd,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
        return proc.returncode, output
    except subprocess.TimeoutExpired:
        kill_group(proc)
        output, _ = proc.communicate()
        return None, output
    finally:
        kill_group(proc)


def kill_group(proc):
    """Kill a child's process group (if still there) and reap the child."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def tail(output, lines=40):
    return "\n".join(output.strip().splitlines()[-lines:])


@functools.lru_cache(maxsize=None)
def example_module():
    """`examples/multiworker_ctl.py` imported as a module (its launcher)."""
    spec = importlib.util.spec_from_file_location("multiworker_ctl", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class SingleReference:
    """The single-process run of the example, started once and shared.

    `start()` launches it in the background (it then overlaps with the
    workers of a test), `result()` waits for it.
    """

    _cache = {}

    def __init__(self, steps):
        self.steps = steps
        self.directory = tempfile.mkdtemp(prefix="eql_single_")
        self.path = os.path.join(self.directory, "single.json")
        self.log = open(os.path.join(self.directory, "single.log"), "w+")
        self.proc = subprocess.Popen(
            [PYTHON, EXAMPLE, "--single", "--steps", str(steps), "--out", self.path],
            env=child_env(), stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)
        self._result = None

    @classmethod
    def start(cls, steps):
        if steps not in cls._cache:
            if not cls._cache:
                atexit.register(cls._kill_all)
            cls._cache[steps] = cls(steps)
        return cls._cache[steps]

    @classmethod
    def _kill_all(cls):
        for reference in cls._cache.values():
            kill_group(reference.proc)

    def result(self, timeout=240):
        if self._result is None:
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
            finally:
                kill_group(self.proc)
            self.log.seek(0)
            output = self.log.read()
            assert self.proc.returncode == 0, f"single-process reference failed:\n{tail(output)}"
            with open(self.path) as handle:
                self._result = json.load(handle)
        return self._result
