"""Shared fixtures."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from mlff import preemption

SLURM_SETUP = Path(__file__).resolve().parent.parent / ".ci" / "slurm-setup.sh"
CHROMIUM = Path("/usr/bin/chromium")


def unavailable(what: str, reason: str) -> None:
    """In CI (CI=true) a missing system service is a failure; elsewhere its tests skip, saying how to get it.

    ``make test`` run as root installs what these tests need (.ci/system-packages.sh).
    """
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"the {what} tests must run in CI, but {reason}", pytrace=False)
    pytest.skip(f"{reason}: run `make test` as root, which installs it, or `sudo apt-get install {INSTALL[what]}`")


INSTALL = {"slurm": "slurm-wlm munge", "browser": "chromium"}  # Debian packages of the system tests


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A one-node Slurm (2 CPUs, 2 fake GPUs) on localhost, started by .ci/slurm-setup.sh and stopped by PID.

    Yields the path of its slurm.conf; ``SLURM_CONF`` points at it while the session runs.
    """
    if os.geteuid() != 0:
        unavailable("slurm", "starting slurmctld and slurmd needs root")
    missing = [p for p in ("munged", "slurmctld", "slurmd", "sbatch", "squeue") if shutil.which(p) is None]
    if missing:
        unavailable("slurm", f"{', '.join(missing)} not installed")
    directory = tmp_path_factory.mktemp("slurm")
    started = subprocess.run(
        ["bash", str(SLURM_SETUP), "start", str(directory), "2"], capture_output=True, text=True, timeout=120
    )
    if started.returncode != 0:
        subprocess.run(["bash", str(SLURM_SETUP), "stop", str(directory)], timeout=60)
        unavailable("slurm", f"Slurm did not start: {started.stderr.strip()[-2000:]}")
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(directory / "slurm.conf")
    try:
        yield directory / "slurm.conf"
    finally:
        jobs = subprocess.run(["squeue", "--noheader", "--format=%A"], capture_output=True, text=True).stdout.split()
        if jobs:  # every job on this private cluster is a test's
            subprocess.run(["scancel", *sorted(set(jobs))], timeout=60)
            for _ in range(60):
                if not subprocess.run(["squeue", "--noheader"], capture_output=True, text=True).stdout.strip():
                    break
                time.sleep(1)
        subprocess.run(["bash", str(SLURM_SETUP), "stop", str(directory)], timeout=60)
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous


@pytest.fixture
def chromium() -> Path:
    """Debian's headless-capable Chromium."""
    if not CHROMIUM.exists():
        unavailable("browser", f"{CHROMIUM} is not installed")
    return CHROMIUM


@pytest.fixture
def stop_signals():
    """Install the preemption handlers for one test; restore the previous handlers afterwards."""
    previous = {signum: signal.getsignal(signum) for signum in preemption.STOP_SIGNALS}
    preemption.clear()
    preemption.install_handlers()
    yield
    preemption.clear()
    for signum, handler in previous.items():
        signal.signal(signum, handler)


@pytest.fixture
def one_torch_thread():
    """Tiny graphs run faster on one torch thread, and kinder to a shared two-core machine."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
