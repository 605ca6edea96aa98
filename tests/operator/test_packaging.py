"""Static checks of the images and the compose file (images cannot be built on the test machines)."""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

import pytest
import yaml
from resonance_worker.settings import WorkerSettings

from tests.operator import fixtures
from tests.operator.desired.test_settings import worker_variables

REPO = fixtures.REPO


def _scripts() -> dict[str, str]:
    scripts: dict[str, str] = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    return scripts


def _instructions(name: str) -> list[tuple[str, str]]:
    text = (REPO / name).read_text().replace("\\\n", " ")
    return [
        (line.split(maxsplit=1)[0].upper(), line.split(maxsplit=1)[1] if " " in line else "")
        for line in (raw.strip() for raw in text.splitlines())
        if line and not line.startswith("#")
    ]


@pytest.mark.parametrize("kind", ["worker", "operator"])
def test_dockerfile_runs_the_console_script_as_non_root(kind: str) -> None:
    instructions = _instructions(f"Dockerfile.{kind}")
    entrypoint = [json.loads(arg) for op, arg in instructions if op == "ENTRYPOINT"]
    assert entrypoint == [[f"resonance-{kind}"]]
    assert f"resonance-{kind}" in _scripts()
    module = _scripts()[f"resonance-{kind}"].split(":")[0]
    assert (REPO / kind / module.replace(".", "/")).with_suffix(".py").exists()
    users = [arg for op, arg in instructions if op == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    stages = [arg for op, arg in instructions if op == "FROM"]
    assert all("slim" in stage for stage in stages)
    runs = " ".join(arg for op, arg in instructions if op == "RUN")
    # Installed from the hashed lock of the image's own extra, never re-resolved at build time.
    assert f"--require-hashes requirements/{kind}.lock" in runs
    copied = [arg.split()[0] for op, arg in instructions if op == "COPY" and "--from" not in arg]
    for source in copied:
        assert (REPO / source).exists(), source


def test_compose_references_are_consistent() -> None:
    compose: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    volumes = set(compose.get("volumes", {}))
    known = worker_variables()
    host_ports: list[str] = []
    workers = [name for name, service in services.items() if "build" in service]
    assert len(workers) >= 2
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for mount in service.get("volumes", []):
            assert mount.split(":")[0] in volumes, mount
        host_ports.extend(port.split(":")[0] for port in service.get("ports", []))
        if "build" in service:
            assert (REPO / service["build"]["dockerfile"]).exists()
            assert service["build"]["dockerfile"] == "Dockerfile.worker"
            environment = service["environment"]
            assert set(environment) <= known, set(environment) - known
            for variable in ("RESONANCE_REDIS_URL", "RESONANCE_NEO4J__URI"):
                host = re.match(r"^\w+://([^:/]+)", environment[variable])
                assert host is not None and host.group(1) in services
            assert environment["RESONANCE_ENGINE"] == "redis"
            port = environment["RESONANCE_PORT"]
            assert all(p.endswith(f":{port}") for p in service["ports"])
            # The worker reads this environment as it stands (compose defaults substituted).
            resolved = {k: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(v)) for k, v in environment.items()}
            with pytest.MonkeyPatch.context() as patch:
                for key, value in resolved.items():
                    patch.setenv(key, value)
                worker_settings = WorkerSettings()
            assert worker_settings.neo4j.uri == resolved["RESONANCE_NEO4J__URI"]
            assert worker_settings.redis_url == resolved["RESONANCE_REDIS_URL"]
    assert len(host_ports) == len(set(host_ports)), "two services publish the same host port"
