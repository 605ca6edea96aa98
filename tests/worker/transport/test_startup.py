"""A worker's start-up: it listens, answers ``/ready`` and accepts connections before SciPy (the
biometric algorithms' seconds of import) is loaded; biometrics import it on first use, or a
background thread does once the worker listens (``living.bio_warm_up``)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.harness.worker import WorkerProcess
from tests.worker.transport.conftest import Clients
from tests.worker.transport.test_living import ppg_batches

StartWorker = Callable[..., WorkerProcess]

CHECK_IMPORTS = """
import json, sys
import resonance_worker.__main__
from resonance_worker.domain.biometrics import BiometricStream, StreamConfig
BiometricStream(StreamConfig(camera_region="finger"))
print(json.dumps(sorted(name for name in sys.modules if name.split(".")[0] == "scipy")))
"""


def test_importing_the_worker_and_opening_a_stream_import_no_scipy() -> None:
    out = subprocess.run([sys.executable, "-c", CHECK_IMPORTS], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def scipy_loaded(worker: WorkerProcess) -> bool:
    """Whether the worker process has mapped SciPy's extension modules (from outside: /proc)."""
    with open(f"/proc/{worker.process.pid}/maps") as maps:
        return "/scipy/" in maps.read()


def wait_until(condition: Callable[[], bool], timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


async def test_a_worker_is_ready_and_connects_before_scipy_which_the_first_batch_imports(
    start_worker: StartWorker, clients: Clients
) -> None:
    worker = start_worker({"RESONANCE_LIVING__BIO_WARM_UP": "false"})  # ready: /ready answered 200
    ready = {"status": "ready", "engine": "memory", "biometrics": "on first use"}
    assert worker.http("GET", "/ready") == (200, ready)
    # The first batch imports SciPy: seconds of CPU, more on a loaded machine.
    client, _ = await clients.connected(worker.ws_url, worker.token("ada"), timeout=120)
    assert not scipy_loaded(worker)
    readings = [
        reading
        for batch in ppg_batches(12)
        for reading in (await client.rpc("bio.push", batch)).data["readings"]
    ]
    assert any(r["kind"] == "heart_rate" and r["bpm"] is not None for r in readings)
    assert scipy_loaded(worker)
    assert worker.http("GET", "/ready")[1]["biometrics"] == "warm"


def test_a_worker_is_ready_while_it_warms_scipy_up_in_the_background(tmp_path: Path) -> None:
    worker = WorkerProcess(tmp_path, {"RESONANCE_LIVING__BIO_WARM_UP": "true"})
    worker.process.start()
    try:
        # Ready (200) before or while warming; the harness's start() waits for "warm" too.
        assert wait_until(lambda: worker.http("GET", "/ready")[0] == 200)
        assert wait_until(lambda: worker.http("GET", "/ready")[1]["biometrics"] == "warm"), "never warm"
        assert scipy_loaded(worker)  # no bio.push was sent: the warm-up imported it
        assert wait_until(lambda: any(r.get("msg") == "biometrics warmed up" for r in worker.log_records()))
    finally:
        worker.stop()
