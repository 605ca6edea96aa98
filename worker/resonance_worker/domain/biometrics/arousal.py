"""Arousal relative to a person's own baseline, from heart rate, log-RMSSD and breathing rate.

Baseline: the mean and spread of each measure over the first clean minutes of a
session (or restored from an earlier one). Afterwards each new value becomes a
z-score against it; RMSSD's sign is flipped (vagal withdrawal = lower RMSSD =
more aroused) and the available z-scores are averaged. The index squashes that
into 0..1 with 0.5 at baseline. It says "more/less activated than usual", never
which emotion, and nothing medical.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from resonance_worker.domain.biometrics.readings import ArousalLevel

# Floors on the baseline spread: a very steady baseline must not turn tiny changes into big z-scores.
SPREAD_FLOOR = {"hr": 3.0, "ln_rmssd": 0.15, "breathing": 1.5}
SIGN = {"hr": 1.0, "ln_rmssd": -1.0, "breathing": 1.0}
LEVEL_Z = 1.0


@dataclass(slots=True)
class RunningStats:
    """Welford mean and variance."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, value: float) -> None:
        self.count += 1
        delta = value - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (value - self.mean)

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / (self.count - 1)) if self.count > 1 else 0.0


@dataclass(slots=True)
class PersonalBaseline:
    """Per-measure running statistics; frozen once enough clean readings came in."""

    min_hr_readings: int = 60
    min_hrv_readings: int = 3
    stats: dict[str, RunningStats] = field(
        default_factory=lambda: {name: RunningStats() for name in ("hr", "ln_rmssd", "breathing")}
    )
    frozen: bool = False

    @property
    def ready(self) -> bool:
        return self.stats["hr"].count >= self.min_hr_readings and (
            self.stats["ln_rmssd"].count >= self.min_hrv_readings
        )

    def learn(self, name: str, value: float) -> None:
        if self.frozen:
            return
        self.stats[name].add(value)
        if self.ready:
            self.frozen = True

    def z_scores(self, current: dict[str, float | None]) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for name, value in current.items():
            stats = self.stats[name]
            if value is None or stats.count < 2:
                out[name] = None
                continue
            spread = max(stats.std, SPREAD_FLOOR[name])
            out[name] = SIGN[name] * (value - stats.mean) / spread
        return out

    def to_dict(self) -> dict[str, object]:
        """Plain form, so the worker can keep a person's baseline across sessions."""
        return {
            "frozen": self.frozen,
            "stats": {name: [s.count, s.mean, s.m2] for name, s in self.stats.items()},
        }

    @classmethod
    def from_dict(
        cls, data: dict[str, object], *, min_hr_readings: int, min_hrv_readings: int
    ) -> PersonalBaseline:
        baseline = cls(min_hr_readings=min_hr_readings, min_hrv_readings=min_hrv_readings)
        stats = data.get("stats")
        if isinstance(stats, dict):
            for name, triple in stats.items():
                if name in baseline.stats and isinstance(triple, list | tuple) and len(triple) == 3:
                    count, mean, m2 = (float(item) for item in triple)
                    if count >= 0 and m2 >= 0 and all(map(math.isfinite, (count, mean, m2))):
                        baseline.stats[name] = RunningStats(int(count), mean, m2)
        baseline.frozen = bool(data.get("frozen")) and baseline.ready
        return baseline


def combine(z_scores: dict[str, float | None]) -> tuple[float | None, float | None, ArousalLevel | None]:
    """(z, index 0..1, level) from the available z-scores; heart rate must be among them."""
    if z_scores.get("hr") is None:
        return None, None, None
    present = [z for z in z_scores.values() if z is not None]
    z = sum(present) / len(present)
    index = 0.5 + 0.5 * math.tanh(z / 2.0)
    level: ArousalLevel = "near_baseline"
    if z > LEVEL_Z:
        level = "above_baseline"
    elif z < -LEVEL_Z:
        level = "below_baseline"
    return z, index, level
