"""Settings of the living core (thyroid, states, rooms, biometrics) and of the graph.

Part of ``WorkerSettings`` (``RESONANCE_LIVING__…`` and ``RESONANCE_NEO4J__…``);
documented in docs/settings.md and docs/living-core.md ("Wiring").
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

CircuitOnlySource = Literal["engine_timeout", "neo4j_failure"]


class LivingSettings(BaseModel):
    """The living core's parameters. The defaults suit production; tests shrink the times."""

    model_config = ConfigDict(frozen=True)

    enabled: bool = Field(True, description="Serve the living core (RPC methods, channels, thyroid).")
    thyroid_threshold: float = Field(10.0, gt=0, description="Pain at which the thyroid becomes stressed.")
    thyroid_half_life_seconds: float = Field(60.0, gt=0, description="Half-life of pain.")
    thyroid_min_dwell_seconds: float = Field(
        30.0, ge=0, description="A thyroid state holds at least this long before it relaxes."
    )
    thyroid_overload_factor: float = Field(
        3.0, gt=1, description="Overloaded at this multiple of the threshold."
    )
    thyroid_identity_share: float = Field(
        0.25,
        gt=0,
        description="One connection, client address or user adds at most this × the threshold to the pain "
        "(a flood from one source cannot shed everyone).",
    )
    thyroid_flood_factor: float = Field(
        20.0,
        ge=1,
        description="A connection (or user) whose errors reach this × its pain cap is disconnected (3509).",
    )
    thyroid_circuit_only_sources: list[CircuitOnlySource] = Field(
        # Neo4j only feeds the graph projection, never delivery: its outage must not shed clients.
        default_factory=lambda: list[CircuitOnlySource](["neo4j_failure"]),
        description="Dependency pain sources that only open their circuit and never stress the worker "
        "(JSON list; `[]` lets a failing graph throttle and shed clients like any other pain).",
    )
    thyroid_evaluate_seconds: float = Field(
        1.0, gt=0, description="How often the thyroid is evaluated, merged with peers and published."
    )
    thyroid_peer_ttl_seconds: float = Field(
        15.0, gt=0, description="A worker's pain snapshot in the engine expires unless rewritten."
    )
    disconnect_storm_count: int = Field(
        50, ge=2, description="This many disconnects within the storm window are one `disconnect_storm` pain."
    )
    disconnect_storm_window_seconds: float = Field(10.0, gt=0, description="The disconnect-storm window.")
    state_half_life_seconds: float = Field(60.0, gt=0, description="Half-life of a person's smoothed state.")
    person_ttl_seconds: float = Field(
        30 * 86400.0,
        gt=0,
        description="A person's biometric baseline, self-reports and body samples are kept in the engine "
        "this long after their last change, so a person moved to another worker continues.",
    )
    room_tick_seconds: float = Field(1.0, gt=0, description="How often each room's resonance is computed.")
    room_cadence_seconds: float = Field(
        5.0, gt=0, description="A room's resonance is published at least this often."
    )
    room_min_change: float = Field(
        0.1, gt=0, le=1, description="A resonance change this large is published at once (not before 1 s)."
    )
    room_window_seconds: float = Field(
        120.0, gt=0, description="Heart-rate synchrony and pattern window of a room."
    )
    room_min_overlap_seconds: float = Field(
        30.0, gt=0, description="Common heart-rate data a pair of members needs for synchrony."
    )
    room_max_members: int = Field(50, ge=2, description="Members per room (over it: error 106).")
    bio_max_streams: int = Field(1000, ge=1, description="Biometric streams per worker (over it: error 106).")
    bio_warm_up: bool = Field(
        True,
        description="Import what the biometric algorithms need (SciPy: seconds of CPU) in a background "
        "thread once the worker listens, so the first `bio.push` does not wait for it; off: on the first "
        "`bio.push` (in a worker thread, never on the event loop). Either way `/ready` does not wait for it.",
    )
    doc_max_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="Size limit of a shared document (past it: error 106)."
    )
    doc_compact_updates: int = Field(
        200, ge=1, description="A shared document's log is folded into a snapshot at this many updates."
    )
    doc_idle_seconds: float = Field(
        60.0, gt=0, description="A shared document untouched this long is dropped from a worker's memory."
    )
    doc_ttl_seconds: float = Field(
        30 * 86400.0, gt=0, description="A shared document not written this long expires from Redis."
    )
    doc_awareness_per_second: float = Field(
        10.0,
        gt=0,
        description="Awareness updates one connection may announce per document and second (burst as many); "
        "past it a client's newer state replaces its held one, released within a second.",
    )
    journal_capacity: int = Field(
        10_000,
        ge=1,
        description="Events buffered in order while the event log (Redis) is away, ~1 KiB each; over it "
        "new events are dropped (`resonance_eventlog_dropped_total`).",
    )


class Neo4jSettings(BaseModel):
    """The temporal graph. Off unless ``uri`` is set, so ``make run`` needs no Neo4j."""

    model_config = ConfigDict(frozen=True)

    uri: str | None = Field(None, description="Bolt URI (e.g. `bolt://neo4j:7687`); unset: no graph.")
    user: str = Field("neo4j", description="Neo4j user.")
    password: SecretStr | None = Field(None, description="Neo4j password.")
    database: str | None = Field(None, description="Database name (unset: the server's default).")
