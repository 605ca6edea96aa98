"""The servers the benchmark starts: our worker over several processes on the Redis engine (issue 19's
deployed configuration), measured as its forked processes."""

from __future__ import annotations

from pathlib import Path

from bench.centrifugo.config import Engine
from bench.load import runner
from bench.load.scenario import Kind, Scenario
from bench.load.servers import Stack, listening_sockets

TCP_TABLE = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:4E21 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 0100007F:4E21 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1
   2: 0100007F:4E21 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 3 1
   3: 0100007F:4E22 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1
"""


def test_listening_sockets_are_counted_by_port_and_state() -> None:
    # Two listeners (SO_REUSEPORT); the established connection is not one.
    assert listening_sockets(0x4E21, TCP_TABLE) == 2
    assert listening_sockets(0x4E22, TCP_TABLE) == 1
    assert listening_sockets(0x4E23, TCP_TABLE) == 0


def test_chat_on_redis_over_two_worker_processes_is_measured_on_both(tmp_path: Path) -> None:
    stack = Stack(tmp_path, cpus=None)
    try:
        target = stack.start_worker(Engine.REDIS, processes=2)
        assert target.name == "worker-redis-2processes"
        assert len(target.server_pids) == 2 and len(target.ws_urls) == 1
        supervisor = stack.servers[-1].pid
        for pid in target.server_pids:
            assert Path(f"/proc/{pid}/stat").read_text().split(") ")[1].split()[1] == str(supervisor)
        scenario = Scenario(
            kind=Kind.CHAT,
            connections=40,
            room_size=10,
            publish_rate_per_room=4,
            duration_s=1,
            settle_s=0.3,
            drain_s=0.5,
            processes=1,
        )
        result = runner.run(scenario, target)
    finally:
        stack.stop()
    assert result["connect"]["connected"] == 40
    assert result["publish"]["delivery_ratio"] == 1.0
    assert result["publish"]["server_cores"] > 0
