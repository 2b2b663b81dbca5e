"""A real single-node Slurm on localhost for tests (munged, slurmctld, slurmd as root).

Follows the measured recipe of the project's toolchain notes: no systemd, a
temporary state directory, partitions ``main`` (default) and ``gpu`` with two
fake GPUs (gres ``File=/dev/null``, ``/dev/zero``), ``kill_invalid_depend`` so
a chain whose dependency failed is cancelled.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

TOOLS = ("slurmctld", "slurmd", "sbatch", "scontrol", "munged")


def available() -> str | None:
    """None when a local Slurm can be started here, else the reason it cannot."""
    if os.geteuid() != 0:
        return "needs root to run slurmd/munged"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"missing {missing} (apt-get install slurmctld slurmd slurm-client munge)"
    return None


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


class LocalSlurm:
    """Start/stop a throw-away single-node cluster whose state lives in ``root``."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.conf = self.root / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        self.node = socket.gethostname().split(".")[0]
        self.pids: dict[str, int] = {}

    def _write_conf(self) -> None:
        probe = _run(["slurmd", "-C"]).stdout
        cpus = int(re.search(r"CPUs=(\d+)", probe).group(1))
        mem = int(re.search(r"RealMemory=(\d+)", probe).group(1))
        for d in ("state", "spool", "log"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        (self.root / "gres.conf").write_text(
            f"NodeName={self.node} Name=gpu File=/dev/null\nNodeName={self.node} Name=gpu File=/dev/zero\n")
        self.conf.write_text("\n".join([
            "ClusterName=cnvrocktest",
            f"SlurmctldHost={self.node}",
            "AuthType=auth/munge",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "SchedulerParameters=batch_sched_delay=0",
            "DependencyParameters=kill_invalid_depend",
            "ReturnToService=2",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"StateSaveLocation={self.root}/state",
            f"SlurmdSpoolDir={self.root}/spool",
            f"SlurmctldPidFile={self.root}/slurmctld.pid",
            f"SlurmdPidFile={self.root}/slurmd.pid",
            f"SlurmctldLogFile={self.root}/log/slurmctld.log",
            f"SlurmdLogFile={self.root}/log/slurmd.log",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "GresTypes=gpu",
            f"NodeName={self.node} CPUs={cpus} RealMemory={mem} Gres=gpu:2 State=UNKNOWN",
            f"PartitionName=main Nodes={self.node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES",
            f"PartitionName=gpu Nodes={self.node} MaxTime=INFINITE State=UP OverSubscribe=YES",
            "",
        ]))

    def start(self, timeout: float = 30.0) -> "LocalSlurm":
        self._write_conf()
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge")
        self.started_munged = False
        if _run(["pgrep", "-x", "munged"]).returncode != 0:
            res = _run(["runuser", "-u", "munge", "--", "munged", "--force"])
            if res.returncode != 0:
                raise RuntimeError(f"munged failed to start: {res.stderr}")
            self.started_munged = True  # ours to stop; a munged that was already running is left alone
        for daemon in ("slurmctld", "slurmd"):
            proc = subprocess.Popen([daemon, "-D", "-f", str(self.conf)], env=self.env,
                                    stdout=subprocess.DEVNULL, stderr=open(self.root / "log" / f"{daemon}.err", "w"),
                                    start_new_session=True)
            self.pids[daemon] = proc.pid
            if daemon == "slurmctld":
                self._wait(lambda: _run(["scontrol", "ping"], env=self.env).stdout.count("UP") > 0, timeout, "slurmctld")
        self._wait(self._node_idle, timeout, "node idle")
        return self

    def _node_idle(self) -> bool:
        out = _run(["scontrol", "show", "node", self.node], env=self.env).stdout
        if "DRAIN" in out or "INVAL" in out:
            _run(["scontrol", "update", f"nodename={self.node}", "state=resume"], env=self.env)
        return "State=IDLE" in out or "State=MIXED" in out

    def _wait(self, cond, timeout, what) -> None:
        end = time.time() + timeout
        while time.time() < end:
            if cond():
                return
            time.sleep(0.2)
        logs = "".join(p.read_text()[-2000:] for p in (self.root / "log").glob("*") if p.is_file())
        raise RuntimeError(f"local Slurm: timed out waiting for {what}\n{logs}")

    def job_state(self, job_id: str) -> str:
        out = _run(["scontrol", "show", "-o", "job", job_id], env=self.env).stdout
        m = re.search(r"JobState=(\S+)", out)
        return m.group(1) if m else "UNKNOWN"

    def wait_jobs(self, job_ids: list[str], timeout: float) -> dict[str, str]:
        """Poll until every job is in a final state; return ``{job_id: state}``."""
        final = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
        end = time.time() + timeout
        states: dict[str, str] = {}
        while time.time() < end:
            states = {j: self.job_state(j) for j in job_ids}
            if all(s in final for s in states.values()):
                return states
            time.sleep(1.0)
        raise TimeoutError(f"Slurm jobs not finished after {timeout} s: {states}")

    def stop(self) -> None:
        # stop Slurm before munged: a slurmd that loses munged can hang
        for daemon in ("slurmd", "slurmctld"):
            pid = self.pids.get(daemon)
            if pid:
                try:
                    os.killpg(pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        end = time.time() + 10
        for pid in self.pids.values():
            while time.time() < end:
                try:
                    os.waitpid(pid, os.WNOHANG)
                    state = Path(f"/proc/{pid}/stat").read_text().split()[2]
                except (ChildProcessError, FileNotFoundError):
                    break
                if state == "Z":
                    break
                time.sleep(0.1)
            else:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if getattr(self, "started_munged", False):
            _run(["pkill", "-x", "munged"])
            self.started_munged = False

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
