"""Resonance measures of one room at one moment: agreement of member states, synchrony of their
heart-rate trends, and the resonance that weighs both (definitions in the package docstring).

Each measure has a vectorised form (what the monitor runs) and a pair-by-pair reference form
(``*_pairwise``) that the tests pin it against.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

BPM_MIN, BPM_MAX = 20.0, 250.0
_MAX_DISTANCE = math.sqrt(2.0)


class ResonanceInputError(ValueError):
    """A member state or heart-rate sample that cannot be used."""


@dataclass(frozen=True, slots=True)
class MemberState:
    """A member's current (smoothed) state in the room."""

    member_id: str
    valence: float
    arousal: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.valence) and -1 <= self.valence <= 1):
            raise ResonanceInputError(f"{self.member_id}: valence must be in [-1, 1]")
        if not (math.isfinite(self.arousal) and 0 <= self.arousal <= 1):
            raise ResonanceInputError(f"{self.member_id}: arousal must be in [0, 1]")


@dataclass(frozen=True, slots=True)
class HeartRateSample:
    """One heart-rate value (bpm) at stream time ``t`` (seconds)."""

    t: float
    bpm: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.t):
            raise ResonanceInputError("heart-rate time must be finite")
        if not (math.isfinite(self.bpm) and BPM_MIN <= self.bpm <= BPM_MAX):
            raise ResonanceInputError(
                f"heart rate must be within {BPM_MIN:g}..{BPM_MAX:g} bpm, got {self.bpm}"
            )


@dataclass(frozen=True, slots=True)
class ResonanceConfig:
    agreement_weight: float = 0.6
    synchrony_weight: float = 0.4
    window_s: float = 120.0
    """Heart-rate window for synchrony, and the trend window for patterns."""
    step_s: float = 1.0
    """Resampling grid step."""
    min_overlap_s: float = 30.0
    """A pair needs this much common heart-rate data to count."""
    min_spread_bpm: float = 0.5
    """A series flatter than this (standard deviation) has no trend to correlate."""
    min_trend_change: float = 0.15
    """Agreement must move at least this much over the window to be a convergence/divergence."""
    max_lag_s: float = 10.0
    min_lag_correlation: float = 0.6

    def __post_init__(self) -> None:
        if self.agreement_weight < 0 or self.synchrony_weight < 0:
            raise ValueError("weights must be ≥ 0")
        if self.agreement_weight + self.synchrony_weight <= 0:
            raise ValueError("at least one weight must be positive")
        for name in ("window_s", "step_s", "min_overlap_s", "min_trend_change", "max_lag_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be positive")
        if self.min_overlap_s > self.window_s:
            raise ValueError("min_overlap_s cannot exceed window_s")
        if not 0 < self.min_lag_correlation <= 1:
            raise ValueError("min_lag_correlation must be in (0, 1]")


# ----------------------------------------------------------------------------- agreement


def state_agreement(states: Sequence[MemberState]) -> float | None:
    """``1 − mean pairwise distance in (v/2, a) / √2``; None with fewer than two members.

    All pairs at once (a distance matrix); equal to :func:`state_agreement_pairwise`.
    """
    if len(states) < 2:
        return None
    points = np.array([(s.valence / 2.0, s.arousal) for s in states], dtype=np.float64)
    difference = points[:, None, :] - points[None, :, :]
    distances = np.sqrt(np.einsum("ijk,ijk->ij", difference, difference))
    upper = np.triu_indices(len(points), 1)
    return 1.0 - float(np.mean(distances[upper])) / _MAX_DISTANCE


def state_agreement_pairwise(states: Sequence[MemberState]) -> float | None:
    """The definition, one pair at a time: the reference for :func:`state_agreement` (O(n²) Python)."""
    if len(states) < 2:
        return None
    points = np.array([(s.valence / 2.0, s.arousal) for s in states], dtype=np.float64)
    distances = [float(np.linalg.norm(points[i] - points[j])) for i, j in combinations(range(len(points)), 2)]
    return 1.0 - float(np.mean(distances)) / _MAX_DISTANCE


# ----------------------------------------------------------------------------- synchrony


def resample(times: FloatArray, values: FloatArray, grid: FloatArray, *, hold: bool = False) -> FloatArray:
    """Values on ``grid``: linear interpolation, or the last value at or before each point (``hold``)."""
    if hold:
        index = np.searchsorted(times, grid, side="right") - 1
        result: FloatArray = values[np.clip(index, 0, len(values) - 1)]
        return result
    interpolated: FloatArray = np.interp(grid, times, values)
    return interpolated


def _as_arrays(samples: Iterable[HeartRateSample], start: float, end: float) -> tuple[FloatArray, FloatArray]:
    chosen = sorted((s.t, s.bpm) for s in samples if start <= s.t <= end)
    if not chosen:
        return np.empty(0), np.empty(0)
    array = np.array(chosen, dtype=np.float64)
    return array[:, 0], array[:, 1]


def pearson(x: FloatArray, y: FloatArray) -> float | None:
    """Pearson correlation, or None when either side is constant or there are < 3 points."""
    if len(x) < 3:
        return None
    dx, dy = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float(dx @ dx) * float(dy @ dy))
    if denominator <= 1e-12:
        return None
    return max(-1.0, min(1.0, float(dx @ dy) / denominator))


@dataclass(frozen=True, slots=True)
class Synchrony:
    score: float | None
    """Mean of max(0, r) over usable pairs; None when no pair is usable."""
    correlations: Mapping[tuple[str, str], float]
    """Pearson r per usable pair (ids sorted within the pair)."""


def window_grid(now: float, config: ResonanceConfig) -> FloatArray:
    """The shared resampling grid ``now − k·step_s``, ``k = n…0``: the window, ending exactly at ``now``."""
    steps = math.floor(config.window_s / config.step_s + 1e-9)
    grid: FloatArray = now - config.step_s * np.arange(steps, -1, -1, dtype=np.float64)
    return grid


@dataclass(frozen=True, slots=True)
class OnGrid:
    """A member's series resampled on the window grid, valid on ``grid[first:end]``."""

    values: FloatArray
    first: int
    end: int
    t_first: float
    t_last: float


def on_grid(times: FloatArray, values: FloatArray, grid: FloatArray, *, hold: bool) -> OnGrid:
    first = int(np.searchsorted(grid, times[0], side="left"))
    end = len(grid) if hold else int(np.searchsorted(grid, times[-1], side="right"))
    return OnGrid(resample(times, values, grid, hold=hold), first, end, float(times[0]), float(times[-1]))


def _heart_series(
    series: Mapping[str, Sequence[HeartRateSample]], now: float, config: ResonanceConfig
) -> dict[str, OnGrid]:
    """Each member with ≥ 2 samples in ``[now − window_s, now]``, resampled once on the window grid."""
    start = now - config.window_s
    grid = window_grid(now, config)
    members: dict[str, OnGrid] = {}
    for member, samples in series.items():
        times, values = _as_arrays(samples, start, now)
        if len(times) >= 2:
            members[member] = on_grid(times, values, grid, hold=False)
    return members


def _pair_sums(left: FloatArray, right: FloatArray) -> FloatArray:
    """``left · rightᵀ`` by einsum's own loop: single-threaded, where a multi-threaded BLAS spins for
    ages on matrices this small on a busy machine."""
    product: FloatArray = np.einsum("aj,bj->ab", left, right)
    return product


def heart_rate_synchrony(
    series: Mapping[str, Sequence[HeartRateSample]], now: float, config: ResonanceConfig
) -> Synchrony:
    """Synchrony of the members' heart-rate trends over ``[now − window_s, now]``.

    Each member is resampled once on the shared window grid; a pair uses the
    grid points inside both members' sample ranges. Every pair at once: with
    ``M`` the members' validity masks and ``C`` their values (centred on each
    member's own mean, zero outside), the sums over each pair's common range
    are matrix products (``M·Mᵀ``, ``C·Mᵀ``, ``C²·Mᵀ``, ``C·Cᵀ``), so a tick
    costs four products instead of a Python loop over pairs. Equal to
    :func:`heart_rate_synchrony_pairwise` (tests pin it).
    """
    members = _heart_series(series, now, config)
    names = sorted(members)
    if len(names) < 2:
        return Synchrony(None, {})
    on_grid = [members[name] for name in names]
    size = len(on_grid[0].values)
    columns = np.arange(size)
    first = np.array([g.first for g in on_grid])
    end = np.array([g.end for g in on_grid])
    mask = ((columns >= first[:, None]) & (columns < end[:, None])).astype(np.float64)
    values = np.array([g.values for g in on_grid])
    counts_own = mask.sum(axis=1)
    means = np.divide((values * mask).sum(axis=1), counts_own, out=np.zeros(len(names)), where=counts_own > 0)
    centred = (values - means[:, None]) * mask
    n = _pair_sums(mask, mask)  # common points of a and b
    sum_a = _pair_sums(centred, mask)  # [a, b]: Σ a over the common points; b's is the transpose
    sum_aa = _pair_sums(centred * centred, mask)
    sum_ab = _pair_sums(centred, centred)
    t_first = np.array([g.t_first for g in on_grid])
    t_last = np.array([g.t_last for g in on_grid])
    overlap_s = np.minimum.outer(t_last, t_last) - np.maximum.outer(t_first, t_first)
    with np.errstate(invalid="ignore", divide="ignore"):
        var_a = np.maximum(sum_aa / n - (sum_a / n) ** 2, 0.0)  # population variance, as np.std
        spread = np.sqrt(np.minimum(var_a, var_a.T))
        numerator = n * sum_ab - sum_a * sum_a.T
        scale_a = n * sum_aa - sum_a * sum_a
        r = numerator / np.sqrt(scale_a * scale_a.T)
    usable = (overlap_s >= config.min_overlap_s) & (n >= 3) & (spread >= config.min_spread_bpm)
    rows, cols = np.triu_indices(len(names), 1)
    chosen = usable[rows, cols]
    rows, cols = rows[chosen], cols[chosen]
    if len(rows) == 0:
        return Synchrony(None, {})
    pair_r = np.clip(r[rows, cols], -1.0, 1.0)
    correlations = {
        (names[a], names[b]): float(value)
        for a, b, value in zip(rows.tolist(), cols.tolist(), pair_r.tolist(), strict=True)
    }
    score = float(np.mean(np.maximum(pair_r, 0.0)))
    return Synchrony(score, correlations)


def heart_rate_synchrony_pairwise(
    series: Mapping[str, Sequence[HeartRateSample]], now: float, config: ResonanceConfig
) -> Synchrony:
    """The definition, one pair at a time: the reference for :func:`heart_rate_synchrony`."""
    members = _heart_series(series, now, config)
    correlations: dict[tuple[str, str], float] = {}
    for a, b in combinations(sorted(members), 2):
        ga, gb = members[a], members[b]
        if min(ga.t_last, gb.t_last) - max(ga.t_first, gb.t_first) < config.min_overlap_s:
            continue
        lo, hi = max(ga.first, gb.first), min(ga.end, gb.end)
        xa, xb = ga.values[lo:hi], gb.values[lo:hi]
        if len(xa) < 3 or min(float(xa.std()), float(xb.std())) < config.min_spread_bpm:
            continue
        r = pearson(xa, xb)
        assert r is not None  # both sides have ≥ 3 points and vary by ≥ min_spread_bpm
        correlations[(a, b)] = r
    if not correlations:
        return Synchrony(None, {})
    score = float(np.mean([max(0.0, r) for r in correlations.values()]))
    return Synchrony(score, correlations)


# ----------------------------------------------------------------------------- resonance


@dataclass(frozen=True, slots=True)
class RoomResonance:
    room_id: str
    at: float
    score: float | None
    """Weighted resonance 0..1; None when neither part is defined."""
    agreement: float | None
    synchrony: float | None
    members: int
    synced_pairs: int

    def to_dict(self) -> dict[str, Any]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 4)

        return {
            "room_id": self.room_id,
            "at": self.at,
            "score": rounded(self.score),
            "agreement": rounded(self.agreement),
            "synchrony": rounded(self.synchrony),
            "members": self.members,
            "synced_pairs": self.synced_pairs,
        }


def combine(agreement: float | None, synchrony: float | None, config: ResonanceConfig) -> float | None:
    """``(w_a·agreement + w_s·synchrony) / (w_a + w_s)`` over the defined parts."""
    parts = [(w, v) for w, v in ((config.agreement_weight, agreement), (config.synchrony_weight, synchrony))]
    defined = [(w, v) for w, v in parts if v is not None and w > 0]
    if not defined:
        return None
    return sum(w * v for w, v in defined) / sum(w for w, _ in defined)


def room_resonance(
    room_id: str,
    states: Sequence[MemberState],
    heart_rates: Mapping[str, Sequence[HeartRateSample]],
    now: float,
    config: ResonanceConfig,
    *,
    pairwise: bool = False,
) -> RoomResonance:
    """The room's resonance at ``now`` (``pairwise``: by the pair-by-pair reference definitions)."""
    if pairwise:
        agreement = state_agreement_pairwise(states)
        synchrony = heart_rate_synchrony_pairwise(heart_rates, now, config)
    else:
        agreement = state_agreement(states)
        synchrony = heart_rate_synchrony(heart_rates, now, config)
    members = len({s.member_id for s in states} | set(heart_rates))
    return RoomResonance(
        room_id=room_id,
        at=now,
        score=combine(agreement, synchrony.score, config),
        agreement=agreement,
        synchrony=synchrony.score,
        members=members,
        synced_pairs=len(synchrony.correlations),
    )
