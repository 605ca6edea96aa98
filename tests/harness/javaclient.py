"""Drive the official ``centrifuge-java`` SDK (protobuf, as on Android) from async tests.

``tests/java`` is a small Maven project around ``io.github.centrifugal:centrifuge-java`` (pinned, from Maven
Central); ``tests/java/build`` compiles it once and caches it outside the repository by a hash of its sources.
The driver speaks :mod:`tests.harness.sdkclient`'s line protocol, with the same ops as the JS driver."""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.harness.sdkclient import SdkClient, SdkClientError

JAVA_DIR = Path(__file__).resolve().parents[1] / "java"
CENTRIFUGE_JAVA = "0.4.1"

JavaClientError = SdkClientError


@functools.cache
def driver_dir() -> Path:
    """The cached build (``classes/`` and ``lib/``), built now when the sources changed."""
    done = subprocess.run([str(JAVA_DIR / "build")], capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"tests/java/build failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


class JavaClient(SdkClient):
    """One centrifuge-java client in a JVM."""

    name = f"centrifuge-java {CENTRIFUGE_JAVA} (protobuf)"

    def command(self) -> tuple[Sequence[str], Path]:
        java = shutil.which("java")
        if java is None:
            raise RuntimeError("java is missing (the machine image should provide Java 17)")
        built = driver_dir()
        classpath = f"{built / 'classes'}:{built / 'lib'}/*"
        # Client JVM, small heap, no JIT tiers past C1: a short-lived test client starts in about 0.5 s.
        flags = ["-XX:+UseSerialGC", "-Xmx128m", "-XX:TieredStopAtLevel=1", "-Xshare:auto"]
        return [java, *flags, "-cp", classpath, "resonance.javaclient.Driver"], JAVA_DIR
