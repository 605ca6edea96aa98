"""The living-core glue in-process: a real node and memory engine (or a Redis engine pointed at
a closed port), time passed in through a manual clock. The SDK-level behaviour is in test_living.py."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import orjson
import pytest
from resonance_worker.domain.biometrics import HeartRateReading
from resonance_worker.domain.codes import Disconnect, Disconnects, ErrorCode
from resonance_worker.domain.emotion import StateSource
from resonance_worker.domain.thyroid import PainSnapshot, PainSource, ThyroidState
from resonance_worker.engines import MemoryEngine
from resonance_worker.engines.base import ClientInfo
from resonance_worker.engines.redis import RedisEngine
from resonance_worker.living.biometrics import parse_batch
from resonance_worker.living.core import Living
from resonance_worker.living.pain import pain_of_disconnect, pain_of_error
from resonance_worker.living.thyroid import PAIN_CHANNEL
from resonance_worker.living_settings import LivingSettings
from resonance_worker.rpc import RpcCall, RpcError
from resonance_worker.settings import DataSettings, WorkerSettings
from resonance_worker.storage import Storage
from resonance_worker.transport.app import build_worker
from resonance_worker.transport.node import Node

from bench.biometrics import synthetic


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Conn:
    """Stands in for a connection in ``node.connections`` (only its presence there matters)."""


def make(
    settings: LivingSettings | None = None,
    *,
    engine: Any = None,
    name: str = "glue",
    clock: Clock | None = None,
) -> tuple[Living, Node, Clock]:
    clock = clock or Clock()
    worker = build_worker(
        # What the core stores is what these tests check; consent has its own tests (test_data_rights.py).
        WorkerSettings(
            node_name=name, living=settings or LivingSettings(), data=DataSettings(consent_required=False)
        ),
        Storage.around(engine or MemoryEngine()),
        clock=clock,
    )
    assert worker.living is not None
    return worker.living, worker.node, clock


def heart_rate(bpm: float) -> HeartRateReading:
    """A heart-rate reading as a stream emits it (only its bpm matters here)."""
    return HeartRateReading(
        t=0.0, quality=1.0, bpm=bpm, window_s=10.0, beats=12, motion=None, activity="still"
    )


@pytest.fixture
async def living() -> AsyncIterator[tuple[Living, Node, Clock]]:
    made = make(
        LivingSettings(
            thyroid_threshold=2.0,
            thyroid_half_life_seconds=10.0,
            thyroid_min_dwell_seconds=0.0,
            disconnect_storm_count=3,
            room_window_seconds=20.0,
            room_min_overlap_seconds=5.0,
            room_cadence_seconds=1.0,
            room_max_members=2,
            bio_max_streams=1,
        )
    )
    await made[1].engine.start(made[1])
    yield made
    await made[1].engine.close()


def call(data: Any, user: str = "ann", client: str = "c1", method: str = "x") -> RpcCall:
    return RpcCall(method, data, user, client)


def test_error_codes_and_disconnects_map_to_pain_sources() -> None:
    assert pain_of_error(ErrorCode.UNAUTHORIZED) is PainSource.AUTH_FAILURE
    assert pain_of_error(ErrorCode.TOKEN_EXPIRED) is PainSource.AUTH_FAILURE
    assert pain_of_error(ErrorCode.METHOD_NOT_FOUND) is PainSource.PROTOCOL_ERROR
    assert pain_of_error(ErrorCode.BAD_REQUEST) is PainSource.PROTOCOL_ERROR
    # Counted where they happen (engine failure, limits), so not twice.
    for code in (ErrorCode.INTERNAL, ErrorCode.TOO_MANY_REQUESTS, ErrorCode.LIMIT_EXCEEDED):
        assert pain_of_error(code) is None
    assert pain_of_disconnect(None) is None
    assert pain_of_disconnect(Disconnects.INVALID_TOKEN) is PainSource.AUTH_FAILURE
    assert pain_of_disconnect(Disconnects.BAD_REQUEST) is PainSource.PROTOCOL_ERROR
    assert pain_of_disconnect(Disconnects.MESSAGE_TOO_BIG) is PainSource.PROTOCOL_ERROR
    assert pain_of_disconnect(Disconnects.SHUTDOWN) is None
    assert pain_of_disconnect(Disconnect(4000, "custom")) is None


async def test_pain_adapts_limits_and_relaxes(living: tuple[Living, Node, Clock]) -> None:
    core, node, clock = living
    base_rate = node.session_config.command_rate
    base_publish = node.settings.limits.user_publish_rate
    node.limit_tripped("command_rate", client="c")  # the node's hook: limit_hit, 0.5
    core.thyroid.error_reply(int(ErrorCode.UNAUTHORIZED))  # auth_failure, 1
    core.thyroid.error_reply(int(ErrorCode.INTERNAL))  # not counted here
    core.thyroid.disconnected(Disconnects.INVALID_TOKEN)  # auth_failure, 1
    assert core.thyroid.state is ThyroidState.STRESSED
    assert node.session_config.command_rate == pytest.approx(base_rate * 0.5)
    assert node.limits.current().user_publish_rate == pytest.approx(base_publish * 0.5)
    assert node.settings.limits.user_publish_rate == base_publish  # the settings are never replaced
    status = core.thyroid.status(clock())
    assert status["sources"]["limit_hit"] == 0.5 and status["sources"]["auth_failure"] == 2.0
    assert status["insights"][0]["top_source"] == "auth_failure"
    for _ in range(4):
        core.thyroid.feel(PainSource.SERVER_ERROR)  # 20 ≥ 3 × 2: overloaded
    assert core.thyroid.state.value == "overloaded"
    assert core.thyroid.shed_retry_after() is not None and core.thyroid.shed_retry_after() >= 1.0
    assert node.session_config.command_rate == pytest.approx(base_rate * 0.25)
    clock.now += 200  # twenty half-lives
    await core.thyroid_step()
    assert core.thyroid.state is ThyroidState.CALM and core.thyroid.shed_retry_after() is None
    assert node.session_config.command_rate == base_rate
    await core.settle()
    replayed = await core.event_log.replay(limit=100)
    kinds = [event.type.value for event in replayed]
    assert kinds.count("thyroid_released") == 2 and "thyroid_relaxed" in kinds


async def test_engine_failures_open_the_circuit(living: tuple[Living, Node, Clock]) -> None:
    core, _, clock = living
    for _ in range(2):
        core.thyroid.feel(
            PainSource.ENGINE_TIMEOUT
        )  # 6 ≥ 2: stressed, and ≥ half the threshold: redis circuit
    assert "redis" in core.thyroid.adaptations.open_circuits
    assert core.thyroid.circuits["redis"].state(clock()).value == "open"
    assert core.thyroid.circuits["neo4j"].state(clock()).value == "closed"


async def test_disconnect_storms_hurt(living: tuple[Living, Node, Clock]) -> None:
    core, node, clock = living
    for _ in range(3):
        core.thyroid.disconnected(None)
    assert core.thyroid.status(clock())["sources"]["disconnect_storm"] == 5.0
    node.draining = True  # a drain closes everyone: no storm, however many
    for _ in range(10):
        core.thyroid.disconnected(Disconnects.SHUTDOWN)
    assert core.thyroid.status(clock())["sources"]["disconnect_storm"] == 5.0


async def test_clients_sent_away_to_reconnect_are_no_storm_and_are_readmitted_while_shedding(
    living: tuple[Living, Node, Clock],
) -> None:
    from resonance_worker.living.origin import PainOrigin, charged_to

    core, _, clock = living
    for n in range(5):  # the position check sends everyone away at once after Redis came back empty
        with charged_to(PainOrigin(f"198.51.100.{n}", None)):
            core.thyroid.disconnected(Disconnects.INSUFFICIENT_STATE.because("stream gone"))
    assert core.thyroid.status(clock())["sources"]["disconnect_storm"] == 0.0
    assert core.thyroid.shed_retry_after("198.51.100.1") is None  # calm: nothing shed, no ticket used
    for _ in range(4):
        core.thyroid.feel(PainSource.SERVER_ERROR)  # overloaded: new handshakes are shed
    assert core.thyroid.shed_retry_after("203.0.113.9") is not None  # a stranger
    assert core.thyroid.shed_retry_after("198.51.100.1") is None  # one that was sent away, once
    assert core.thyroid.shed_retry_after("198.51.100.1") is not None
    assert core.thyroid.shed_retry_after() is not None  # no address known: shed
    with charged_to(PainOrigin("198.51.100.7", None)):
        core.thyroid.disconnected(Disconnects.SLOW)  # its own fault: no ticket
    assert core.thyroid.shed_retry_after("198.51.100.7") is not None


async def test_peer_pain_is_merged_and_malformed_peers_are_skipped(
    living: tuple[Living, Node, Clock],
) -> None:
    core, node, clock = living
    peer = PainSnapshot(
        "other", clock(), 10.0, {PainSource.ENGINE_TIMEOUT: 3.0}, {PainSource.ENGINE_TIMEOUT: 3.0}, {}
    )
    await node.engine.add_presence(
        PAIN_CHANNEL,
        ClientInfo("thyroid", "other", conn_info=orjson.dumps(peer.to_dict())),
        ttl_seconds=60,
    )
    await node.engine.add_presence(
        PAIN_CHANNEL, ClientInfo("thyroid", "broken", conn_info=b'{"origin": 1}'), ttl_seconds=60
    )
    await node.engine.add_presence(PAIN_CHANNEL, ClientInfo("thyroid", "empty"), ttl_seconds=60)
    await core.thyroid_step()
    status = core.thyroid.status(clock())
    assert status["sources"]["engine_timeout"] == pytest.approx(3.0)
    assert status["state"] == "stressed"  # the cluster's pain, felt here
    own = (await node.engine.presence(PAIN_CHANNEL))["glue"]
    assert own.conn_info is not None and orjson.loads(own.conn_info)["origin"] == "glue"
    await core.thyroid_step()  # nothing changed: the status is not published again
    assert core.thyroid._last_published is not None


async def test_readmission_tickets_travel_in_the_snapshots(living: tuple[Living, Node, Clock]) -> None:
    core, node, clock = living
    core.thyroid.readmissions.grant("10.0.0.1", clock())
    empty = PainSnapshot("p", clock(), 10.0, {}, {}, {}).to_dict()
    for name, tickets in (("peer", [["10.0.0.2", clock() + 30]]), ("bad", [["10.0.0.3"]]), ("odd", {})):
        entry = orjson.dumps({**empty, "origin": name, "tickets": tickets})
        await node.engine.add_presence(
            PAIN_CHANNEL, ClientInfo("thyroid", name, conn_info=entry), ttl_seconds=60
        )
    await core.thyroid_step()
    own = (await node.engine.presence(PAIN_CHANNEL))["glue"]
    assert own.conn_info is not None and orjson.loads(own.conn_info)["tickets"] == [
        ["10.0.0.1", clock() + 60]
    ]
    tickets = core.thyroid.readmissions
    assert tickets.peer_tickets(clock()) == 1  # the malformed lists are skipped (logged)
    assert tickets.take("10.0.0.2", clock()) and not tickets.take("10.0.0.3", clock())


async def test_an_unreachable_engine_is_pain_not_a_crash() -> None:
    from tests.harness.processes import free_port

    engine = RedisEngine(f"redis://127.0.0.1:{free_port()}/0")
    core, node, clock = make(LivingSettings(thyroid_threshold=1.0), engine=engine)
    await engine.start(node)
    await core.thyroid_step()  # nothing listens there: sharing the pain snapshot fails
    await core.publisher.publish("room:x", {"type": "state"})  # and so does a publication...
    assert core.thyroid.status(clock())["sources"]["engine_timeout"] == 3.0  # ...in the same probe window
    clock.now += 1.0  # the next window (thyroid_evaluate_seconds): it counts again
    await core.publisher.publish("room:x", {"type": "state"})
    assert core.thyroid.status(clock())["sources"]["engine_timeout"] >= 5.9
    assert core.thyroid.state is not ThyroidState.CALM
    await engine.close()


async def test_state_rooms_patterns_and_questions(living: tuple[Living, Node, Clock]) -> None:
    core, node, clock = living
    node.connections["c1"] = Conn()  # type: ignore[assignment]
    node.connections["c2"] = Conn()  # type: ignore[assignment]
    with pytest.raises(RpcError) as error:
        await core.report_state(call({"valence": 0.2, "arousal": 0.2}, user=""))
    assert error.value.code == ErrorCode.PERMISSION_DENIED
    with pytest.raises(RpcError) as error:
        await core.join_room(call({"room": 5}))
    assert error.value.code == ErrorCode.BAD_REQUEST
    await core.report_state(call({"valence": 0.8, "arousal": 0.8}))
    assert (await core.join_room(call({"room": "r"})))["members"] == ["ann"]
    await core.join_room(call({"room": "r"}, user="bob", client="c2"))
    with pytest.raises(RpcError) as error:
        await core.join_room(call({"room": "r"}, user="cy", client="c3"))
    assert error.value.code == ErrorCode.LIMIT_EXCEEDED
    # Bob starts far from Ann and moves to her over 20 s: convergence, and a question for each.
    found: list[str] = []
    for step in range(21):
        valence = -0.8 + 1.6 * step / 20
        await core.report_state(call({"valence": valence, "arousal": 0.8}, user="bob", client="c2"))
        await core.rooms_step()
        clock.now += 1.0
        history, _ = await node.engine.history("room:r", limit=-1)
        found = [orjson.loads(p.data)["type"] for p in history]
    assert "resonance" in found and "state" in found
    assert "pattern" in found and "question" in found
    await core.settle()
    kinds = {event.type.value for event in await core.event_log.replay(limit=10_000)}
    assert {"resonance_computed", "pattern_detected", "question_asked", "presence_changed"} <= kinds
    # A member whose connection is gone is dropped at the next tick; an empty room goes away.
    del node.connections["c2"]
    await core.rooms_step()
    assert core.rooms["r"].members == {"c1": "ann"}
    assert await core.leave_room(call({"room": "r"})) == {"left": "r"}
    assert core.rooms == {}


async def test_biometric_arousal_feeds_the_state_and_heart_rate_the_room(
    living: tuple[Living, Node, Clock],
) -> None:
    core, node, clock = living
    node.connections["c1"] = Conn()  # type: ignore[assignment]
    node.by_user["someone-else"] = set()  # a connected user is never forgotten
    await core.report_state(call({"valence": 0.4, "arousal": 0.3}))
    await core.report_state(call({"valence": 0.4, "arousal": 0.3}, user="someone-else"))
    await core.join_room(call({"room": "solo"}))
    beats = synthetic.beat_times(102, hr_bpm=72.0)
    t = synthetic.frame_times(100, jitter=0.1)
    values = synthetic.pulse_at(t, beats)
    kinds: set[str] = set()
    for start in range(100):  # one-second batches, as a phone sends them
        inside = (t >= start) & (t < start + 1)
        motion_t = np.arange(start, start + 1, 0.02)
        batch = {
            "kind": "ppg",
            "t": t[inside].tolist(),
            "values": values[inside].tolist(),
            "motion": {"t": motion_t.tolist(), "accel": [[0.0, 0.0, 9.81]] * len(motion_t)},
        }
        reply = await core.push_biometrics(call(batch))
        kinds |= {reading["kind"] for reading in reply["readings"]}
        if start >= 70 and start % 5 == 0:  # self-reports beside the body's readings, in two sessions
            session = "c1" if start < 85 else "c9"
            await core.report_state(call({"valence": 0.4, "arousal": 0.1 * (start % 3)}, client=session))
        clock.now += 1
    assert {"heart_rate", "hrv", "breathing", "arousal"} <= kinds
    body = core.states.smoother.current("ann", StateSource.BIOMETRIC)
    assert body is not None and 0 <= body.arousal <= 1 and body.valence == pytest.approx(0.4)
    assert core.rooms["solo"].monitor._heart["ann"]  # heart rates reached the room
    reflection = await core.reflect(call(None))
    assert reflection["home"]["pairs"] >= 3 and reflection["home"]["explanation"]
    assert reflection["harmony"]["score"] is not None
    assert reflection["self_understanding"]["sessions"] == 2
    assert all(q["subject"] == "ann" and q["text"] for q in reflection["questions"])
    empty = await core.reflect(call(None, user="nobody"))
    assert empty["home"]["score"] is None and empty["questions"] == []
    with pytest.raises(RpcError) as error:  # one stream per worker in this fixture
        await core.push_biometrics(call({"kind": "ppg", "t": [1.0], "values": [1.0]}, user="zed"))
    assert error.value.code == ErrorCode.LIMIT_EXCEEDED
    history, _ = await node.engine.history("bio:#ann", limit=-1)
    assert history and orjson.loads(history[-1].data)["kind"] in kinds
    assert (await core.current_state(call(None)))["biometric"] is not None
    assert (await core.thyroid_status(call(None)))["state"] == "calm"
    with pytest.raises(RpcError):
        await core.replay(call("all"))
    await core.settle()
    assert (await core.replay(call(None)))["events"]
    # Ann has no connection here (node.by_user is empty): kept for a grace period, then forgotten.
    await core.rooms_step()
    assert "ann" in core.bio.streams
    clock.now += 301
    await core.rooms_step()
    assert "ann" not in core.bio.streams and core.states.smoother.current("ann") is None
    # Forgotten by this worker, not by the engine: the reports come back with Ann's next call here
    # (living/person.py: a person survives pod moves).
    assert (await core.reflect(call(None)))["harmony"]["states"] == reflection["harmony"]["states"] > 0
    assert core.states.smoother.current("someone-else") is not None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1], "bio.push takes a JSON object"),
        ({"kind": "ppg", "t": [1], "values": [1], "x": 1}, "x: unknown field"),
        ({"kind": "ecg", "t": [1], "values": [1]}, "kind must be"),
        ({"kind": "ppg", "t": [1], "values": [1], "region": "ear"}, "region must be"),
        ({"kind": "rgb", "t": [1], "values": [[1, 2, 3]], "face_method": "green"}, "face_method must be"),
        ({"kind": "ppg", "t": [], "values": []}, "t must be a non-empty list"),
        ({"kind": "ppg", "t": [0] * 4097, "values": [0] * 4097}, "t: at most 4096"),
        ({"kind": "ppg", "t": [1, {}], "values": [1, 2]}, "t must hold only numbers or null"),
        ({"kind": "ppg", "t": [[1]], "values": [1]}, "t must be a list of numbers"),
        ({"kind": "rgb", "t": [1], "values": [[1, 2]]}, "values must be a list of rows of 3 numbers"),
        ({"kind": "ppg", "t": [1, 2], "values": [1]}, "t and values must have the same length"),
        ({"t": [1], "values": [1], "motion": {"t": [1], "accel": [[0, 0, 9]], "x": 1}}, "motion must be"),
        (
            {"t": [1], "values": [1], "motion": {"t": [1, 2], "accel": [[0, 0, 9]]}},
            "motion.t, accel and gyro must have the same length",
        ),
        (
            {"t": [1], "values": [1], "motion": {"t": [1], "accel": [[0, 0, 9]], "gyro": [[0, 0]]}},
            "motion.gyro must be a list of rows of 3 numbers",
        ),
    ],
)
def test_bad_batches_are_refused_with_a_message(data: Any, message: str) -> None:
    with pytest.raises(RpcError) as error:
        parse_batch(data)
    assert error.value.code == ErrorCode.BAD_REQUEST and message in error.value.message


async def test_a_face_stream_runs_the_method_its_first_batch_asks_for(
    living: tuple[Living, Node, Clock],
) -> None:
    core, _, clock = living
    beats = synthetic.beat_times(32, hr_bpm=72.0)
    t = synthetic.frame_times(30, jitter=0.1)
    rgb = synthetic.face_scene(t, synthetic.pulse_at(t, beats), skin="medium")
    rates = []
    for start in range(30):
        inside = (t >= start) & (t < start + 1)
        batch = {"kind": "rgb", "t": t[inside].tolist(), "values": rgb[inside].tolist()}
        if start == 0:
            batch |= {"region": "face", "face_method": "chrom"}
        reply = await core.push_biometrics(call(batch, user="faye"))
        heart = [r for r in reply["readings"] if r["kind"] == "heart_rate"]
        rates += [r["bpm"] for r in heart if r.get("bpm") is not None]
        clock.now += 1
    config = core.bio.streams["faye"].stream.config
    assert (config.camera_region, config.face_method) == ("face", "chrom")
    assert rates and abs(float(np.median(rates)) - 72.0) < 3.0, rates


def test_a_batch_with_motion_and_gyro_parses() -> None:
    motion = {"t": [1, 2], "accel": [[0, 0, 9.8]] * 2, "gyro": [[0, 0, 0]] * 2}
    batch = parse_batch({"kind": "rgb", "t": [1, 2], "values": [[1, 2, 3], [1, None, 3]], "motion": motion})
    assert batch.values.shape == (2, 3) and np.isnan(batch.values[1, 1])
    assert batch.motion is not None and batch.motion.gyro is not None and batch.motion.gyro.shape == (2, 3)


class FakeSession:
    user = "mal"


class FakeConn:
    """Stands in for a connection found by its transport; records what the thyroid did to it."""

    def __init__(self, transport: object) -> None:
        self.transport = transport
        self.client_id = "c-mal"
        self.session = FakeSession()
        self.closed_with: list[Disconnect] = []

    def disconnect(self, reason: Disconnect) -> None:
        self.closed_with.append(reason)


async def test_pain_is_charged_to_its_origin_and_a_flooding_connection_is_cut_off() -> None:
    import asyncio

    from resonance_worker.living.origin import _ORIGIN, PainOrigin

    # Cap 0.25 × 4 = 1, flooding at 2 offered.
    core, node, clock = make(LivingSettings(thyroid_threshold=4.0, thyroid_flood_factor=2.0))
    transport = object()
    conn = FakeConn(transport)
    node.connections["older"] = Conn()  # type: ignore[assignment]
    node.connections["c-mal"] = conn  # type: ignore[assignment]
    # An address alone (nothing found for a missing transport) is capped but never cut off.
    token = _ORIGIN.set(PainOrigin("203.0.113.1", None))
    for _ in range(5):
        core.thyroid.feel(PainSource.PROTOCOL_ERROR)
    _ORIGIN.reset(token)
    assert core.thyroid.pain(clock()) == pytest.approx(1.0)
    assert core.thyroid.budget.offered("ip:203.0.113.1", clock()) == 5.0
    # A signed-in connection: conn, ip and user keys; its flood disconnects it once, with 3509.
    origin = PainOrigin("203.0.113.2", transport)
    token = _ORIGIN.set(origin)
    for _ in range(5):
        core.thyroid.error_reply(int(ErrorCode.METHOD_NOT_FOUND))
    assert origin.identities(node) == [f"conn:{origin.number}", "ip:203.0.113.2", "user:mal"]
    core.thyroid.disconnected(Disconnects.TOO_MANY_ERRORS)  # its own disconnect hurts, capped like the rest
    _ORIGIN.reset(token)
    await asyncio.sleep(0)  # the cut-off runs on the next loop turn
    assert conn.closed_with == [Disconnects.TOO_MANY_ERRORS]
    assert core.thyroid.pain(clock()) == pytest.approx(2.0) and core.thyroid.state is ThyroidState.CALM
    assert core.thyroid.cut_offs._value.get() == 1
    await core.thyroid_step()
    assert core.thyroid.flooding_gauge._value.get() == 5  # both connections, both addresses and the user


async def test_a_room_spans_two_workers_on_one_engine() -> None:
    """Two workers' living cores on one (memory) engine: each mirrors the other's members from the
    room's shared entries; only the first by name computes and publishes."""
    engine = MemoryEngine()
    settings = LivingSettings(
        room_window_seconds=40.0,
        room_min_overlap_seconds=5.0,
        room_cadence_seconds=1.0,
        state_half_life_seconds=1.0,
    )
    clock = Clock()
    core_a, node_a, _ = make(settings, engine=engine, name="glue-a", clock=clock)
    core_b, node_b, _ = make(settings, engine=engine, name="glue-b", clock=clock)
    await engine.start(node_a)
    node_a.connections["c1"] = Conn()  # type: ignore[assignment]
    node_b.connections["c2"] = Conn()  # type: ignore[assignment]
    node_b.connections["c3"] = Conn()  # type: ignore[assignment]
    await core_b.report_state(call({"valence": -0.8, "arousal": 0.2}, user="bob", client="c2"))
    assert (await core_b.join_room(call({"room": "r"}, user="bob", client="c2")))["members"] == ["bob"]
    await core_a.report_state(call({"valence": 0.8, "arousal": 0.8}, user="ann", client="c1"))
    assert (await core_a.join_room(call({"room": "r"}, user="ann", client="c1")))["members"] == ["ann", "bob"]
    # Someone else's malformed or empty entries in the room's shared presence are skipped.
    for client, raw in [
        ("x@elsewhere", b'{"worker": 1}'),
        ("y@elsewhere", b'{"worker": "w", "user": "", "hr": [], "states": []}'),
        ("z@elsewhere", b'{"worker": "w", "user": "z", "hr": [[1, 999]], "states": []}'),  # 999 bpm
        ("empty@elsewhere", None),
    ]:
        await engine.add_presence("__living:room:r", ClientInfo("x", client, conn_info=raw), ttl_seconds=60)
    for second in range(30):
        valence = -0.8 + 1.6 * min(second, 20) / 20  # Bob comes round to Ann's state
        await core_b.report_state(call({"valence": valence, "arousal": 0.8}, user="bob", client="c2"))
        await core_b.use_readings("bob", "c2", [heart_rate(70 + 5 * math.sin(second / 3))])
        await core_a.use_readings("ann", "c1", [heart_rate(72 + 5 * math.sin(second / 3))])
        await core_a.rooms_step()
        await core_b.rooms_step()
        clock.now += 1.0
    history, _ = await engine.history("room:r", limit=-1)
    published = [orjson.loads(p.data) for p in history]
    resonance = [p for p in published if p["type"] == "resonance"]
    assert {p["computed_by"] for p in resonance} == {"glue-a"}  # the first by name, alone
    assert all(p["members"] == 2 for p in resonance)
    assert resonance[-1]["agreement"] > 0.9 and resonance[-1]["synchrony"] > 0.9  # Bob's heart, from b
    assert any(p["type"] == "pattern" and p["kind"] == "convergence" for p in published)
    assert core_a.rooms["r"].remote == {"bob": "glue-b"} and core_b.rooms["r"].remote == {"ann": "glue-a"}
    # Bob also connects to a: a's own view of him wins over b's entry.
    await core_a.join_room(call({"room": "r"}, user="bob", client="c4"))
    node_a.connections["c4"] = Conn()  # type: ignore[assignment]
    await core_a.rooms_step()
    assert core_a.rooms["r"].remote == {}
    await core_a.leave_room(call({"room": "r"}, user="bob", client="c4"))
    await core_a.rooms_step()
    assert core_a.rooms["r"].remote == {"bob": "glue-b"}  # mirrored from b's entry again
    # Bob leaves on b: a drops him at its next read; b's room is gone, its entry removed.
    assert await core_b.leave_room(call({"room": "r"}, user="bob", client="c2")) == {"left": "r"}
    assert core_b.rooms == {}
    await core_a.rooms_step()
    assert core_a.rooms["r"].remote == {} and core_a.rooms["r"].monitor.members == ["ann"]
    assert core_a.rooms["r"].workers == {"glue-a"}
    await engine.close()


async def test_rooms_carry_on_alone_when_the_engine_is_unreachable() -> None:
    from tests.harness.processes import free_port

    engine = RedisEngine(f"redis://127.0.0.1:{free_port()}/0")
    core, node, clock = make(LivingSettings(thyroid_threshold=100.0), engine=engine)
    await engine.start(node)
    node.connections["c1"] = Conn()  # type: ignore[assignment]
    assert (await core.join_room(call({"room": "r"})))["members"] == ["ann"]
    assert core.rooms["r"].workers == {"glue"}  # alone: this worker leads
    await core.leave_room(call({"room": "r"}))  # the entry is left to expire
    # Every failed call of one moment (one probe window) is one signal: Redis's health, not the call count.
    assert core.thyroid.status(clock())["sources"]["engine_timeout"] == 3.0
    await engine.close()


async def test_circuit_only_neo4j_pain_opens_the_circuit_and_sheds_nobody() -> None:
    core, _, clock = make(
        LivingSettings(thyroid_threshold=2.0, thyroid_circuit_only_sources=["neo4j_failure"])
    )
    for _ in range(10):  # 20 ≥ 3 × 2: overloaded, were it counted
        core.thyroid.feel(PainSource.NEO4J_FAILURE)
    assert core.thyroid.state is ThyroidState.CALM and core.thyroid.shed_retry_after() is None
    assert core.thyroid.circuits["neo4j"].state(clock()).value == "open"
    assert core.thyroid.status(clock())["sources"]["neo4j_failure"] == pytest.approx(20.0)
