"""What to run and against what: validated, immutable scenario and target descriptions — pure."""

from __future__ import annotations

import enum
import math

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Each load process keeps well under the machine's 20,000 descriptors (sockets plus the interpreter's own).
MAX_CONNECTIONS_PER_PROCESS = 19_000
# Ephemeral ports per (source address, destination): 32768–60999 here, with headroom for TIME_WAIT.
MAX_CONNECTIONS_PER_SOURCE_ADDRESS = 25_000


class Kind(enum.StrEnum):
    IDLE = "idle"
    CHAT = "chat"
    BROADCAST = "broadcast"
    CROSS_NODE = "cross_node"
    RECONNECT_STORM = "reconnect_storm"


class Encoding(enum.StrEnum):
    JSON = "json"  # text frames, newline-delimited JSON (no subprotocol)
    PROTOBUF = "protobuf"  # binary frames, varint-delimited protobuf, subprotocol centrifuge-protobuf


class PublishVia(enum.StrEnum):
    CLIENT = "client"  # a member of the room sends a publish command over its connection
    API = "api"  # the server HTTP API, POST {api_url}/publish


class Target(BaseModel):
    """A server to load: one or more nodes sharing state, addressed by URL, plus the tool's secrets."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, description="Label in results, e.g. `centrifugo-memory`.")
    ws_urls: tuple[str, ...] = Field(min_length=1, description="Client WebSocket URL of every node.")
    api_url: str | None = Field(None, description="HTTP API base, e.g. http://127.0.0.1:8000/api.")
    api_key: str | None = Field(None, description="HTTP API key (sent as `X-API-Key`).")
    token_secret: str = Field(min_length=1, description="HS256 secret for connection tokens.")
    channel_prefix: str = Field("chat:", description="Namespace prefix of the rooms (history + recovery).")
    server_pids: tuple[int, ...] = Field((), description="Processes whose RSS and CPU are measured.")
    engine_pids: tuple[int, ...] = Field(
        (), description="The engine's processes (Redis), whose CPU is measured apart from the servers'."
    )
    connect_to: str | None = Field(
        None,
        description="`address:port` to connect to instead of the URL's host (which still goes in the Host "
        "header), like curl's --connect-to: a virtual host behind a proxy on loopback.",
    )

    @model_validator(mode="after")
    def _urls(self) -> Target:
        for url in self.ws_urls:
            if not url.startswith(("ws://", "wss://")):
                raise ValueError(f"ws_urls must be ws:// or wss:// URLs, got {url!r}")
        if self.connect_to is not None:
            host, _, port = self.connect_to.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"connect_to must be address:port, got {self.connect_to!r}")
        if self.api_url is not None and not self.api_url.startswith(("http://", "https://")):
            raise ValueError(f"api_url must be an http(s) URL, got {self.api_url!r}")
        return self


class Scenario(BaseModel):
    """One bounded load run. Every phase has a limit, so a run always ends by itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Kind
    connections: int = Field(ge=1, le=200_000)
    room_size: int = Field(50, ge=1, description="Subscribers per channel (broadcast: all of them).")
    publish_rate_per_room: float = Field(1.0, ge=0, le=1000, description="Publications per second per room.")
    publish_via: PublishVia = PublishVia.CLIENT
    encoding: Encoding = Field(Encoding.JSON, description="The client protocol encoding of every connection.")
    message_bytes: int = Field(100, ge=60, le=65_536, description="Approximate size of a publication's data.")
    duration_s: float = Field(10.0, gt=0, le=3600, description="Length of the publishing phase.")
    processes: int = Field(2, ge=1, le=64, description="Load processes the connections are spread over.")
    source_addresses: int = Field(4, ge=1, le=250, description="127.0.0.2 … 127.0.0.(1+n) as source IPs.")
    connect_concurrency: int = Field(200, ge=1, le=10_000, description="Handshakes in flight per process.")
    connect_timeout_s: float = Field(120.0, gt=0, le=3600, description="Limit for the whole ramp.")
    settle_s: float = Field(3.0, ge=0, le=600, description="Pause before measuring idle memory.")
    drain_s: float = Field(3.0, ge=0, le=600, description="Wait for late deliveries after publishing.")
    gap_messages: int = Field(5, ge=0, le=1000, description="Reconnect storm: publications while away.")

    @model_validator(mode="after")
    def _fits(self) -> Scenario:
        if self.kind is Kind.BROADCAST and self.room_size != self.connections:
            raise ValueError("broadcast puts every connection in one room: room_size must equal connections")
        if self.room_size > self.connections:
            raise ValueError("room_size cannot exceed connections")
        per_process = math.ceil(self.connections / self.processes)
        if per_process > MAX_CONNECTIONS_PER_PROCESS:
            raise ValueError(
                f"{per_process} connections per process exceeds {MAX_CONNECTIONS_PER_PROCESS}: "
                f"use at least {math.ceil(self.connections / MAX_CONNECTIONS_PER_PROCESS)} processes"
            )
        per_address = math.ceil(self.connections / self.source_addresses)
        if per_address > MAX_CONNECTIONS_PER_SOURCE_ADDRESS:
            raise ValueError(f"{per_address} connections per source address exceeds the ephemeral port range")
        if self.kind is Kind.RECONNECT_STORM and self.room_size < 2:
            raise ValueError(
                "reconnect storm needs rooms of at least 2 (one member stays to publish the gap)"
            )
        return self

    @property
    def rooms(self) -> int:
        return math.ceil(self.connections / self.room_size)

    def room_of(self, connection: int) -> int:
        return connection // self.room_size

    def members_of(self, room: int) -> range:
        return range(room * self.room_size, min((room + 1) * self.room_size, self.connections))

    def publisher_of(self, room: int) -> int:
        """The connection that publishes into ``room`` (its first member)."""
        return room * self.room_size

    def shard_ranges(self) -> list[range]:
        """Contiguous connection ranges, one per load process, sizes differing by at most one."""
        base, extra = divmod(self.connections, self.processes)
        ranges, start = [], 0
        for index in range(self.processes):
            size = base + (1 if index < extra else 0)
            ranges.append(range(start, start + size))
            start += size
        return [r for r in ranges if len(r) > 0]

    def expected_deliveries(self) -> int:
        """Deliveries one publication round (one message into every room) should produce."""
        return self.connections

    @property
    def publishes(self) -> bool:
        return self.kind is not Kind.IDLE and self.publish_rate_per_room > 0


def chat_scenario(connections: int, *, source_addresses: int, seconds: float, **options: object) -> Scenario:
    """The chat scenario as the sizing benchmark and the e2e crowds run it: 50-member rooms, one
    publication a second in each, from ``source_addresses`` loopback addresses; ``options`` set the rest."""
    return Scenario.model_validate(
        {
            "kind": Kind.CHAT,
            "connections": connections,
            "room_size": 50,
            "publish_rate_per_room": 1.0,
            "duration_s": seconds,
            "source_addresses": source_addresses,
            **options,
        }
    )


def node_of(connection: int, nodes: int) -> int:
    """Which node a connection talks to: connections alternate, so every room spans every node."""
    return connection % nodes


def source_address(connection: int, addresses: int) -> str:
    return f"127.0.0.{2 + connection % addresses}"
