"""Resonance rooms: how much a room's members agree and move together.

- **Agreement** of member states: members are points ``(v/2, a)`` (valence
  halved so both axes span 1); ``agreement = 1 − mean pairwise distance / √2``
  (1 = everyone in the same state, 0 = two members at opposite corners).
- **Synchrony** of heart-rate trends: for each pair with at least
  ``min_overlap_s`` of common data in the window, both series are resampled
  onto one grid (linear interpolation, ``step_s``) and correlated (Pearson);
  ``synchrony = mean over pairs of max(0, r)``.
- **Resonance** = ``w_a·agreement + w_s·synchrony`` (weights renormalised over
  the parts that are defined).

Patterns: *convergence*/*divergence* (the least-squares trend of agreement over
a window), *leader-follower* (one member's changes repeat in another's after a
lag: the peak of the cross-correlation of first differences).

A :class:`RoomMonitor` ties it together for one room; time is passed in.
See docs/living-core.md for parameters and limits.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
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
class _OnGrid:
    """A member's series resampled on the window grid, valid on ``grid[first:end]``."""

    values: FloatArray
    first: int
    end: int
    t_first: float
    t_last: float


def _on_grid(times: FloatArray, values: FloatArray, grid: FloatArray, *, hold: bool) -> _OnGrid:
    first = int(np.searchsorted(grid, times[0], side="left"))
    end = len(grid) if hold else int(np.searchsorted(grid, times[-1], side="right"))
    return _OnGrid(resample(times, values, grid, hold=hold), first, end, float(times[0]), float(times[-1]))


def _heart_series(
    series: Mapping[str, Sequence[HeartRateSample]], now: float, config: ResonanceConfig
) -> dict[str, _OnGrid]:
    """Each member with ≥ 2 samples in ``[now − window_s, now]``, resampled once on the window grid."""
    start = now - config.window_s
    grid = window_grid(now, config)
    members: dict[str, _OnGrid] = {}
    for member, samples in series.items():
        times, values = _as_arrays(samples, start, now)
        if len(times) >= 2:
            members[member] = _on_grid(times, values, grid, hold=False)
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


# ----------------------------------------------------------------------------- publishing


class PublishReason(StrEnum):
    FIRST = "first"
    CADENCE = "cadence"
    CHANGE = "change"


class ResonancePublisher:
    """When to publish a room's resonance: first value, every ``cadence_s``, and on a change
    of at least ``min_change`` (but not more often than every ``min_gap_s``)."""

    def __init__(self, cadence_s: float = 5.0, min_change: float = 0.1, min_gap_s: float = 1.0) -> None:
        if not (cadence_s > 0 and min_change > 0 and 0 <= min_gap_s <= cadence_s):
            raise ValueError("need cadence_s > 0, min_change > 0 and 0 ≤ min_gap_s ≤ cadence_s")
        self.cadence_s, self.min_change, self.min_gap_s = cadence_s, min_change, min_gap_s
        self._last_at: float | None = None
        self._last_score: float | None = None

    def decide(self, now: float, score: float | None) -> PublishReason | None:
        """The reason to publish ``score`` now, or None; a returned reason counts as published."""
        reason: PublishReason | None = None
        if self._last_at is None:
            reason = PublishReason.FIRST
        elif now - self._last_at >= self.cadence_s:
            reason = PublishReason.CADENCE
        elif now - self._last_at >= self.min_gap_s and self._changed(score):
            reason = PublishReason.CHANGE
        if reason is not None:
            self._last_at, self._last_score = now, score
        return reason

    def _changed(self, score: float | None) -> bool:
        if (score is None) != (self._last_score is None):
            return True
        if score is None or self._last_score is None:
            return False
        return abs(score - self._last_score) >= self.min_change


# ----------------------------------------------------------------------------- patterns


class PatternKind(StrEnum):
    CONVERGENCE = "convergence"
    DIVERGENCE = "divergence"
    LEADER_FOLLOWER = "leader_follower"


@dataclass(frozen=True, slots=True)
class RoomPattern:
    kind: PatternKind
    room_id: str
    at: float
    strength: float
    """Convergence/divergence: |change of agreement|; leader-follower: mean peak correlation."""
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "room_id": self.room_id,
            "at": self.at,
            "strength": round(self.strength, 4),
            "evidence": dict(self.evidence),
        }


def detect_agreement_trend(
    room_id: str, history: Sequence[tuple[float, float]], now: float, config: ResonanceConfig
) -> RoomPattern | None:
    """Convergence or divergence from ``(t, agreement)`` points in ``[now − window_s, now]``.

    ``change = slope × span`` (least squares over the points, span = last t − first t);
    needs ≥ 3 points spanning at least half the window; a pattern when
    ``|change| ≥ min_trend_change``.
    """
    points = sorted((t, a) for t, a in history if now - config.window_s <= t <= now)
    if len(points) < 3:
        return None
    times = np.array([t for t, _ in points])
    values = np.array([a for _, a in points])
    span = float(times[-1] - times[0])
    if span < config.window_s / 2:
        return None
    centred = times - times.mean()
    slope = float(centred @ (values - values.mean())) / float(centred @ centred)
    change = slope * span
    if abs(change) < config.min_trend_change:
        return None
    kind = PatternKind.CONVERGENCE if change > 0 else PatternKind.DIVERGENCE
    evidence = {
        "from_agreement": round(float(values[0]), 4),
        "to_agreement": round(float(values[-1]), 4),
        "change": round(change, 4),
        "over_s": span,
        "points": len(points),
    }
    return RoomPattern(kind, room_id, now, abs(change), evidence)


def lagged_correlations(x: FloatArray, y: FloatArray, max_lag: int) -> dict[int, float]:
    """Pearson r of ``x[i]`` with ``y[i + k]`` over the overlapping part, for ``k`` in ``−max_lag..max_lag``
    (k > 0: x leads). Lags with < 3 overlapping points or a constant side are left out.

    Vectorised over the lags: the sums over each overlap come from prefix sums, the
    cross sums from one ``np.correlate``.
    """
    n = len(x)
    max_lag = min(max_lag, n - 3)
    if max_lag < 0:
        return {}
    x = x - x.mean()  # Pearson is shift-invariant; centring keeps the sums small and exact-ish
    y = y - y.mean()
    lags = np.arange(-max_lag, max_lag + 1)
    overlap = n - np.abs(lags)
    x_lo, y_lo = np.maximum(0, -lags), np.maximum(0, lags)

    def window_sums(values: FloatArray, lo: npt.NDArray[np.int64]) -> tuple[FloatArray, FloatArray]:
        prefix = np.concatenate(([0.0], np.cumsum(values)))
        prefix_sq = np.concatenate(([0.0], np.cumsum(values * values)))
        return prefix[lo + overlap] - prefix[lo], prefix_sq[lo + overlap] - prefix_sq[lo]

    sx, sxx = window_sums(x, x_lo)
    sy, syy = window_sums(y, y_lo)
    cross = np.correlate(y, x, mode="full")[n - 1 + lags]
    var_x = overlap * sxx - sx * sx
    var_y = overlap * syy - sy * sy
    # A side is constant when its variance is a negligible part of its energy.
    valid = (var_x > 1e-10 * overlap * sxx) & (var_y > 1e-10 * overlap * syy)
    if not valid.any():
        return {}
    numerator = overlap[valid] * cross[valid] - sx[valid] * sy[valid]
    r = np.clip(numerator / np.sqrt(var_x[valid] * var_y[valid]), -1.0, 1.0)
    return dict(zip(lags[valid].tolist(), r.tolist(), strict=True))


def _value_series(
    series: Mapping[str, Sequence[tuple[float, float]]], now: float, config: ResonanceConfig, *, hold: bool
) -> dict[str, _OnGrid]:
    """Each member's ``(t, value)`` series with ≥ 2 points, resampled on the window grid."""
    start = now - config.window_s
    grid = window_grid(now, config)
    members: dict[str, _OnGrid] = {}
    for member, samples in series.items():
        chosen = sorted((t, v) for t, v in samples if t <= now and math.isfinite(t) and math.isfinite(v))
        # The last value before the window still holds at its start.
        before = [item for item in chosen if item[0] < start]
        inside = [item for item in chosen if item[0] >= start]
        kept = ([(start, before[-1][1])] if before and hold else []) + inside
        if len(kept) >= 2:
            array = np.array(kept, dtype=np.float64)
            members[member] = _on_grid(array[:, 0], array[:, 1], grid, hold=hold)
    return members


def _leader_pattern(
    room_id: str, leads: Mapping[str, Mapping[str, tuple[float, float]]], now: float, config: ResonanceConfig
) -> RoomPattern | None:
    """The pattern from ``leader → {follower: (lag_s, r)}``: the member who leads the most others
    (ties: higher mean correlation, then id)."""
    if not leads:
        return None

    def rank(member: str) -> tuple[int, float, str]:
        followers = leads[member]
        return (-len(followers), -float(np.mean([r for _, r in followers.values()])), member)

    leader = min(leads, key=rank)
    followers = leads[leader]
    evidence = {
        "leader": leader,
        "followers": {
            member: {"lag_s": lag, "correlation": round(r, 4)}
            for member, (lag, r) in sorted(followers.items())
        },
    }
    strength = float(np.mean([r for _, r in followers.values()]))
    return RoomPattern(PatternKind.LEADER_FOLLOWER, room_id, now, strength, evidence)


def detect_leader_follower(
    room_id: str,
    series: Mapping[str, Sequence[tuple[float, float]]],
    now: float,
    config: ResonanceConfig,
    *,
    hold: bool = True,
) -> RoomPattern | None:
    """Whose changes do the others repeat after a lag?

    Each member's ``(t, value)`` series (e.g. reported valence, ``hold=True``;
    heart rate, ``hold=False``) is resampled on one grid over the window and
    differenced. For each pair the lag with the highest cross-correlation of the
    differences is found; if it is positive, at least ``min_lag_correlation``,
    and at most ``max_lag_s``, the first member leads the second. The leader is
    the member who leads the most others (ties: higher mean correlation, then id).

    Every pair and lag at once. For a pair with window ``[lo, hi)`` and lag
    ``k`` the sums run over grid positions ``j`` in ``[lo + max(0, −k),
    hi − 1 − max(0, k))`` (``x = Δa[j]``, ``y = Δb[j+k]``): a contiguous range,
    so the single-member sums come from prefix sums; the cross sums are one
    matrix product per lag (one einsum over all lags), because "``j`` and
    ``j + k`` inside both members' ranges" splits into one mask per member. Equal to
    :func:`detect_leader_follower_pairwise` (tests pin it).
    """
    members = _value_series(series, now, config, hold=hold)
    names = sorted(members)
    max_lag = max(1, round(config.max_lag_s / config.step_s))
    if len(names) < 2:
        return None
    on_grid = [members[name] for name in names]
    values = np.array([g.values for g in on_grid])
    diffs = np.diff(values, axis=1)  # Δ at grid position j = values[j+1] − values[j]
    width = diffs.shape[1]
    first = np.array([g.first for g in on_grid])
    end = np.array([g.end for g in on_grid])
    rows, cols = np.triu_indices(len(names), 1)
    lo = np.maximum(first[rows], first[cols])
    hi = np.minimum(end[rows], end[cols])
    changes = np.concatenate([np.zeros((len(names), 1)), np.cumsum(diffs != 0, axis=1)], axis=1)
    last = np.maximum(hi - 1, lo)
    candidate = (
        (hi - lo >= 2 * max_lag + 4)
        & (changes[rows, last] - changes[rows, lo] > 0)  # someone who never changed has nothing to follow
        & (changes[cols, last] - changes[cols, lo] > 0)
    )
    rows, cols, lo, hi = rows[candidate], cols[candidate], lo[candidate], hi[candidate]
    if len(rows) == 0:
        return None
    lags = np.arange(-max_lag, max_lag + 1)
    start = lo[None, :] + np.maximum(0, -lags)[:, None]  # (lag, pair)
    stop = (hi - 1)[None, :] - np.maximum(0, lags)[:, None]
    c = (stop - start).astype(np.float64)
    prefix = np.concatenate([np.zeros((len(names), 1)), np.cumsum(diffs, axis=1)], axis=1)
    prefix_sq = np.concatenate([np.zeros((len(names), 1)), np.cumsum(diffs * diffs, axis=1)], axis=1)
    sx = prefix[rows, stop] - prefix[rows, start]
    sxx = prefix_sq[rows, stop] - prefix_sq[rows, start]
    shift = lags[:, None]
    sy = prefix[cols, stop + shift] - prefix[cols, start + shift]
    syy = prefix_sq[cols, stop + shift] - prefix_sq[cols, start + shift]
    positions = np.arange(width)
    moved = positions[None, :] + lags[:, None]  # (lag, j) → j + k
    clipped = np.clip(moved, 0, width - 1)
    own = (positions[None, :] >= first[:, None]) & (positions[None, :] < end[:, None] - 1)
    # (lag, member, j): j and j + k inside the member's range
    mask = own[None, :, :] & own[:, clipped].transpose(1, 0, 2) & ((moved >= 0) & (moved < width))[:, None, :]
    x = np.where(mask, diffs[None, :, :], 0.0)
    y = np.where(mask, diffs[:, clipped].transpose(1, 0, 2), 0.0)
    sxy = np.einsum("kaj,kbj->kab", x, y)[:, rows, cols]
    # Centred on the pair window's means, as the definition does (Pearson is shift-invariant; its
    # "constant side" test is not). The mean of Δ over the window telescopes.
    sizes = (hi - lo - 1).astype(np.float64)
    mean_x = (values[rows, hi - 1] - values[rows, lo]) / sizes
    mean_y = (values[cols, hi - 1] - values[cols, lo]) / sizes
    cx = sx - c * mean_x
    cy = sy - c * mean_y
    cxx = sxx - 2 * mean_x * sx + c * mean_x**2
    cyy = syy - 2 * mean_y * sy + c * mean_y**2
    cxy = sxy - mean_y * sx - mean_x * sy + c * mean_x * mean_y
    var_x = c * cxx - cx * cx
    var_y = c * cyy - cy * cy
    valid = (var_x > 1e-10 * c * cxx) & (var_y > 1e-10 * c * cyy) & (c >= 3)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.clip((c * cxy - cx * cy) / np.sqrt(var_x * var_y), -1.0, 1.0)
    r = np.where(valid, r, -np.inf)
    best_r = r.max(axis=0)
    # Ties: the smaller |lag|, then the more negative lag (the definition's order).
    order = np.abs(lags) * (2 * max_lag + 1) + (lags + max_lag)
    best = np.argmin(np.where(r == best_r[None, :], order[:, None], np.iinfo(np.int64).max), axis=0)
    best_lag = lags[best]
    leads: dict[str, dict[str, tuple[float, float]]] = {}
    chosen = np.isfinite(best_r) & (best_lag != 0) & (best_r >= config.min_lag_correlation)
    for a, b, lag, value in zip(
        rows[chosen].tolist(),
        cols[chosen].tolist(),
        best_lag[chosen].tolist(),
        best_r[chosen].tolist(),
        strict=True,
    ):
        leader, follower = (names[a], names[b]) if lag > 0 else (names[b], names[a])
        leads.setdefault(leader, {})[follower] = (abs(lag) * config.step_s, value)
    return _leader_pattern(room_id, leads, now, config)


def detect_leader_follower_pairwise(
    room_id: str,
    series: Mapping[str, Sequence[tuple[float, float]]],
    now: float,
    config: ResonanceConfig,
    *,
    hold: bool = True,
) -> RoomPattern | None:
    """The definition, one pair at a time: the reference for :func:`detect_leader_follower`."""
    members = _value_series(series, now, config, hold=hold)
    max_lag = max(1, round(config.max_lag_s / config.step_s))
    leads: dict[str, dict[str, tuple[float, float]]] = {}
    for a, b in combinations(sorted(members), 2):
        ga, gb = members[a], members[b]
        lo, hi = max(ga.first, gb.first), min(ga.end, gb.end)
        if hi - lo < 2 * max_lag + 4:
            continue
        da = np.diff(ga.values[lo:hi])
        db = np.diff(gb.values[lo:hi])
        if not (da.any() and db.any()):
            continue  # someone did not change at all: nothing to follow
        correlations = lagged_correlations(da, db, max_lag)
        if not correlations:
            continue
        best = max(sorted(correlations), key=lambda k: (correlations[k], -abs(k)))
        r = correlations[best]
        if best == 0 or r < config.min_lag_correlation:
            continue
        leader, follower = (a, b) if best > 0 else (b, a)
        leads.setdefault(leader, {})[follower] = (abs(best) * config.step_s, r)
    return _leader_pattern(room_id, leads, now, config)


# ----------------------------------------------------------------------------- one room


@dataclass(frozen=True, slots=True)
class RoomTick:
    """What one tick of a room produced."""

    resonance: RoomResonance
    publish: PublishReason | None
    """Set when the resonance should be published now."""
    patterns: tuple[RoomPattern, ...]
    """Patterns that newly appeared at this tick (each fires once until it disappears)."""


class RoomMonitor:
    """One room: members' latest states, their heart-rate and valence windows, the publisher,
    the agreement history and edge-triggered patterns. The wiring feeds it and calls ``tick``."""

    def __init__(
        self,
        room_id: str,
        config: ResonanceConfig,
        publisher: ResonancePublisher | None = None,
        *,
        pairwise: bool = False,
    ) -> None:
        self.room_id = room_id
        self.config = config
        self.pairwise = pairwise
        """Compute by the pair-by-pair reference definitions (O(n²) Python; for tests and benchmarks)."""
        self.publisher = publisher or ResonancePublisher()
        self._states: dict[str, MemberState] = {}
        self._heart: dict[str, deque[HeartRateSample]] = {}
        self._valence: dict[str, deque[tuple[float, float]]] = {}
        self._agreement: deque[tuple[float, float]] = deque()
        self._active: set[PatternKind] = set()

    @property
    def members(self) -> list[str]:
        return sorted(set(self._states) | set(self._heart))

    def update_state(self, state: MemberState, at: float) -> None:
        self._states[state.member_id] = state
        self._valence.setdefault(state.member_id, deque()).append((at, state.valence))

    def add_heart_rate(self, member_id: str, sample: HeartRateSample) -> None:
        self._heart.setdefault(member_id, deque()).append(sample)

    def remove_member(self, member_id: str) -> None:
        self._states.pop(member_id, None)
        self._heart.pop(member_id, None)
        self._valence.pop(member_id, None)

    def trim(self, now: float) -> None:
        """Forget what has left the window (``tick`` does it too; for a monitor not ticked)."""
        self._trim(now)

    def _trim(self, now: float) -> None:
        horizon = now - self.config.window_s
        for samples in self._heart.values():
            while samples and samples[0].t < horizon:
                samples.popleft()
        for points in self._valence.values():
            # Keep one point before the horizon: it still holds at the window's start.
            while len(points) > 1 and points[1][0] <= horizon:
                points.popleft()
        while self._agreement and self._agreement[0][0] < horizon:
            self._agreement.popleft()

    def tick(self, now: float) -> RoomTick:
        """Compute the resonance at ``now``, decide publishing and detect new patterns."""
        self._trim(now)
        resonance = room_resonance(
            self.room_id,
            list(self._states.values()),
            {m: list(s) for m, s in self._heart.items()},
            now,
            self.config,
            pairwise=self.pairwise,
        )
        if resonance.agreement is not None:
            self._agreement.append((now, resonance.agreement))
        found: list[RoomPattern] = []
        trend = detect_agreement_trend(self.room_id, list(self._agreement), now, self.config)
        detect = detect_leader_follower_pairwise if self.pairwise else detect_leader_follower
        leader = detect(self.room_id, {m: list(p) for m, p in self._valence.items()}, now, self.config)
        present = {p.kind for p in (trend, leader) if p is not None}
        for pattern in (trend, leader):
            if pattern is not None and pattern.kind not in self._active:
                found.append(pattern)
        self._active = present
        return RoomTick(resonance, self.publisher.decide(now, resonance.score), tuple(found))
