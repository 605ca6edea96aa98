"""Command line: run one scenario against one target and write its JSON result (and a PNG plot).

Start-and-stop targets (the tool starts the servers on loopback and kills them afterwards)::

    python -m bench.load chat --target centrifugo-memory --connections 5000
    python -m bench.load cross_node --target centrifugo-redis --nodes 2 --connections 4000
    python -m bench.load chat --target worker-memory --connections 5000
    python -m bench.load chat --target centrifugo-memory --encoding protobuf --connections 5000

An already running server (measured by pid when given)::

    python -m bench.load chat --ws-url ws://127.0.0.1:8000/connection/websocket \\
        --token-secret SECRET [--api-url http://127.0.0.1:8000/api --api-key KEY] [--server-pid PID]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.centrifugo.config import Engine
from bench.load import plot, runner
from bench.load.scenario import Encoding, Kind, PublishVia, Scenario, Target
from bench.load.servers import stack

TARGETS = ("centrifugo-memory", "centrifugo-redis", "worker-memory", "worker-redis")


def default_cpus() -> tuple[frozenset[int] | None, frozenset[int] | None]:
    """On a machine with two or more CPUs: servers on CPU 0, load processes on the rest, so neither steals
    the other's core and the server's CPU figure is one core's worth."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None, None
    return frozenset(available[:1]), frozenset(available[1:])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=[k.value for k in Kind])
    parser.add_argument("--target", choices=TARGETS, help="start this server stack for the run")
    parser.add_argument("--nodes", type=int, default=None, help="server nodes (cross_node: 2)")
    parser.add_argument("--ws-url", action="append", default=[], help="client URL of a running node")
    parser.add_argument("--api-url")
    parser.add_argument("--api-key")
    parser.add_argument("--token-secret")
    parser.add_argument("--channel-prefix", default="chat:")
    parser.add_argument("--server-pid", type=int, action="append", default=[])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--room-size", type=int, default=None, help="default 50 (broadcast: all)")
    parser.add_argument("--rate", type=float, default=1.0, help="publications per second per room")
    parser.add_argument("--publish-via", choices=[p.value for p in PublishVia], default="client")
    parser.add_argument("--encoding", choices=[e.value for e in Encoding], default="json")
    parser.add_argument("--message-bytes", type=int, default=100)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--source-addresses", type=int, default=4)
    parser.add_argument("--gap-messages", type=int, default=5)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before measuring idle memory")
    parser.add_argument("--drain", type=float, default=3.0, help="seconds to wait for late deliveries")
    parser.add_argument(
        "--nice", type=int, default=0, help="niceness of servers and load (negative: root; shared machines)"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin servers and load to separate CPUs")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    return parser


def scenario_from(args: argparse.Namespace) -> Scenario:
    kind = Kind(args.kind)
    room_size = args.room_size or (args.connections if kind is Kind.BROADCAST else 50)
    return Scenario(
        kind=kind,
        connections=args.connections,
        room_size=room_size,
        publish_rate_per_room=args.rate,
        publish_via=PublishVia(args.publish_via),
        encoding=Encoding(args.encoding),
        message_bytes=args.message_bytes,
        duration_s=args.duration,
        processes=args.processes,
        source_addresses=args.source_addresses,
        gap_messages=args.gap_messages,
        settle_s=args.settle,
        drain_s=args.drain,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    scenario = scenario_from(args)
    server_cpus, client_cpus = (None, None) if args.no_pin else default_cpus()
    nodes = args.nodes or (2 if scenario.kind is Kind.CROSS_NODE else 1)
    args.out.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="resonance-bench-") as workdir,
        stack(Path(workdir), server_cpus, args.nice) as s,
    ):
        if args.target:
            product, engine = args.target.split("-")
            start = s.start_centrifugo if product == "centrifugo" else s.start_worker
            target = start(Engine(engine), nodes=nodes)
        else:
            if not args.ws_url or not args.token_secret:
                print("give --target, or --ws-url and --token-secret", file=sys.stderr)
                return 2
            target = Target(
                name="external",
                ws_urls=tuple(args.ws_url),
                api_url=args.api_url,
                api_key=args.api_key,
                token_secret=args.token_secret,
                channel_prefix=args.channel_prefix,
                server_pids=tuple(args.server_pid),
            )
        result = runner.run(scenario, target, client_cpus=client_cpus, nice=args.nice)
    kind = scenario.kind.value if scenario.encoding is Encoding.JSON else f"{scenario.kind.value}-protobuf"
    stem = f"{kind}-{target.name}-{time.strftime('%Y%m%dT%H%M%S')}"
    path = args.out / f"{stem}.json"
    path.write_text(json.dumps(result, indent=2))
    plot.plot_results([result], args.out / f"{stem}.png")
    print(json.dumps({k: v for k, v in result.items() if k != "timeline"}, indent=2))
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
