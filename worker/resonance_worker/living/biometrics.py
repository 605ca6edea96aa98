"""``bio.push`` batches, typed, and the per-person biometric streams of one worker.

:func:`parse_batch` turns the RPC's JSON into a :class:`BioBatch` of numpy arrays (or refuses it
with error 107 and the field at fault); :class:`BioStreams` pushes it through the person's
:class:`~resonance_worker.domain.biometrics.BiometricStream` in a worker thread, one batch of a
person at a time, and returns the typed readings
(:data:`~resonance_worker.domain.biometrics.Reading`). What each kind of reading feeds (heart rate
→ rooms, arousal → the person's state) is decided by type in ``living.core``
(``Living.use_readings``).

A new batch field: add it to :class:`BioBatch` and :func:`parse_batch`. A new kind of reading:
define it in ``domain/biometrics/readings.py``, emit it from the stream, and give it a ``case``
in ``Living.use_readings`` if anything besides its publication on ``bio:#<user>`` should happen.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np

from resonance_worker.domain.biometrics import BiometricsError, BiometricStream, Reading, StreamConfig
from resonance_worker.domain.biometrics.arousal import PersonalBaseline
from resonance_worker.domain.biometrics.config import CameraRegion, FaceMethod
from resonance_worker.domain.codes import ErrorCode
from resonance_worker.rpc import RpcError

BIO_NAMESPACE = "bio"
MAX_BATCH_ROWS = 4096

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


def bio_channel(user: str) -> str:
    """Where a person's readings are published (only they may subscribe)."""
    return f"{BIO_NAMESPACE}:#{user}"


BatchKind = Literal["ppg", "rgb"]
"""``ppg``: raw PPG samples, one number per timestamp; ``rgb``: camera frame means, three per timestamp."""
KINDS: tuple[BatchKind, ...] = ("ppg", "rgb")
REGIONS: tuple[CameraRegion, ...] = ("finger", "face")
FACE_METHODS: tuple[FaceMethod, ...] = ("pos", "chrom")
"""GREEN is only a benchmark baseline: a lamp's flicker fools it at full quality (docs/biometrics.md),
so clients cannot ask for it."""


@dataclass(frozen=True, slots=True)
class MotionBatch:
    """Accelerometer (and optionally gyroscope) rows of three, with their timestamps."""

    t: FloatArray
    accel: FloatArray
    gyro: FloatArray | None


@dataclass(frozen=True, slots=True)
class BioBatch:
    """One ``bio.push``: samples with their timestamps (NaN where the client sent ``null``)."""

    kind: BatchKind
    region: CameraRegion
    face_method: FaceMethod
    t: FloatArray
    values: FloatArray
    """``(n,)`` for PPG, ``(n, 3)`` for RGB."""
    motion: MotionBatch | None = None


_FIELDS = {"kind", "t", "values", "motion", "region", "face_method"}


def _bad(message: str) -> RpcError:
    return RpcError(ErrorCode.BAD_REQUEST, message)


def _rows(value: object, name: str, width: int | None) -> FloatArray:
    """A JSON list of numbers (``null`` = a missing value) or of ``width``-number rows, as floats."""
    if not isinstance(value, list) or not value:
        raise _bad(f"{name} must be a non-empty list")
    if len(value) > MAX_BATCH_ROWS:
        raise _bad(f"{name}: at most {MAX_BATCH_ROWS} samples per batch")
    try:
        array = np.array(value, dtype=np.float64)  # null → nan
    except (TypeError, ValueError):
        raise _bad(f"{name} must hold only numbers or null") from None
    expected = (len(value),) if width is None else (len(value), width)
    if array.shape != expected:
        shape = "numbers" if width is None else f"rows of {width} numbers"
        raise _bad(f"{name} must be a list of {shape}")
    return array


def _motion(motion: object) -> MotionBatch:
    if not isinstance(motion, dict) or set(motion) - {"t", "accel", "gyro"}:
        raise _bad("motion must be an object with t, accel and optional gyro")
    motion_t = _rows(motion.get("t"), "motion.t", None)
    accel = _rows(motion.get("accel"), "motion.accel", 3)
    gyro = _rows(motion["gyro"], "motion.gyro", 3) if motion.get("gyro") is not None else None
    if len(accel) != len(motion_t) or (gyro is not None and len(gyro) != len(motion_t)):
        raise _bad("motion.t, accel and gyro must have the same length")
    return MotionBatch(motion_t, accel, gyro)


Choice = TypeVar("Choice", bound=str)


def _choice(data: dict[str, Any], name: str, allowed: tuple[Choice, ...], message: str) -> Choice:
    """``data[name]`` if it is one of ``allowed`` (the first is the default when it is missing)."""
    value = data.get(name, allowed[0])
    for option in allowed:
        if value == option:
            return option
    raise _bad(message)


def parse_batch(data: object) -> BioBatch:
    """A ``bio.push``'s data as a typed batch; :class:`RpcError` 107 saying what is wrong."""
    if not isinstance(data, dict):
        raise _bad("bio.push takes a JSON object")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise _bad(f"{unknown[0]}: unknown field")
    kind = _choice(data, "kind", KINDS, "kind must be 'ppg' (raw samples) or 'rgb' (frame means)")
    region = _choice(data, "region", REGIONS, "region must be 'finger' or 'face'")
    face_method = _choice(data, "face_method", FACE_METHODS, "face_method must be 'pos' or 'chrom'")
    times = _rows(data.get("t"), "t", None)
    values = _rows(data.get("values"), "values", 3 if kind == "rgb" else None)
    if len(values) != len(times):
        raise _bad("t and values must have the same length")
    motion = data.get("motion")
    return BioBatch(kind, region, face_method, times, values, None if motion is None else _motion(motion))


@dataclass(frozen=True, slots=True)
class Pushed:
    """What one batch made: the readings, and the thread CPU time it took."""

    readings: list[Reading]
    cpu_seconds: float


def push(stream: BiometricStream, batch: BioBatch) -> Pushed:
    """One batch through ``stream`` (blocking, numpy: run it in a worker thread)."""
    started = time.thread_time()
    if batch.motion is not None:
        stream.push_motion(batch.motion.t, batch.motion.accel, batch.motion.gyro)
    take = stream.push_rgb if batch.kind == "rgb" else stream.push_ppg
    readings = take(batch.t, batch.values)
    return Pushed(readings, time.thread_time() - started)


@dataclass
class BioStream:
    """One person's stream; its lock keeps their batches in order."""

    stream: BiometricStream
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class BioStreams:
    """The biometric streams of the people on this worker (at most ``max_streams``)."""

    def __init__(self, max_streams: int) -> None:
        self.max_streams = max_streams
        self.streams: dict[str, BioStream] = {}

    async def push(self, user: str, batch: BioBatch, *, baseline: dict[str, Any] | None = None) -> Pushed:
        """``batch`` through ``user``'s stream (opened by their first batch, which picks the camera
        region and face method, continuing ``baseline`` - the person's stored one - when given), off
        the event loop. Errors: 106 when this worker has too many streams, 107 when the stream refuses
        the samples."""
        bio = self.streams.get(user)
        if bio is None:
            if len(self.streams) >= self.max_streams:
                raise RpcError(ErrorCode.LIMIT_EXCEEDED, "too many biometric streams on this worker")
            config = StreamConfig(camera_region=batch.region, face_method=batch.face_method)
            kept = (
                None
                if baseline is None
                else PersonalBaseline.from_dict(
                    baseline,
                    min_hr_readings=config.baseline_min_hr_readings,
                    min_hrv_readings=config.baseline_min_hrv_readings,
                )
            )
            bio = self.streams[user] = BioStream(BiometricStream(config, baseline=kept))
        async with bio.lock:  # one batch of a person at a time, in order
            loop = asyncio.get_running_loop()
            try:
                return await loop.run_in_executor(None, push, bio.stream, batch)
            except BiometricsError as exc:
                raise RpcError(ErrorCode.BAD_REQUEST, str(exc)) from None

    def baseline(self, user: str) -> dict[str, Any] | None:
        """``user``'s baseline in its plain form (None without a stream here)."""
        bio = self.streams.get(user)
        return None if bio is None else bio.stream.baseline.to_dict()

    def stop(self, user: str) -> bool:
        """Close ``user``'s stream; whether there was one."""
        return self.streams.pop(user, None) is not None

    def known(self) -> set[str]:
        return set(self.streams)

    def forget(self, user: str) -> None:
        self.streams.pop(user, None)
