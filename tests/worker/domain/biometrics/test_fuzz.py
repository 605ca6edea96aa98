"""Whatever a client sends, the stream raises a typed error or returns honest readings."""

from __future__ import annotations

import json
import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from resonance_worker.domain.biometrics import BiometricsError, BiometricStream, HeartRateReading

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.floats(min_value=-2.0, max_value=2.0),
)
batch = st.tuples(
    st.floats(min_value=-0.5, max_value=3.0),  # where the batch starts, relative to the last one
    st.floats(min_value=0.0005, max_value=0.5),  # sample period
    st.lists(values, min_size=0, max_size=90),
    st.booleans(),  # add a clean pulse under the values
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(batch, min_size=1, max_size=40))
def test_random_batches_give_typed_errors_or_finite_readings(batches: list) -> None:  # type: ignore[type-arg]
    stream = BiometricStream()
    clock = 0.0
    for offset, period, samples, pulse in batches:
        start = clock + offset
        t = start + np.arange(len(samples)) * period
        x = np.asarray(samples, dtype=np.float64)
        if pulse:
            x = x + np.sin(2 * np.pi * 1.2 * t)
        try:
            readings = stream.push_ppg(t, x)
        except BiometricsError:
            continue
        if len(samples):
            clock = float(t[-1])
        for reading in readings:
            plain = reading.to_dict()
            json.dumps(plain, allow_nan=False)
            assert 0.0 <= reading.quality <= 1.0
            if isinstance(reading, HeartRateReading) and reading.bpm is not None:
                assert math.isfinite(reading.bpm) and 35.0 <= reading.bpm <= 240.0
