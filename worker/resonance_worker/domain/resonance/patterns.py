"""Room patterns over a window: convergence/divergence (the least-squares trend of agreement) and
leader-follower (the peak of the cross-correlation of first differences at a lag)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import combinations
from typing import Any

import numpy as np
import numpy.typing as npt

from resonance_worker.domain.resonance.measures import (
    FloatArray,
    OnGrid,
    ResonanceConfig,
    on_grid,
    window_grid,
)

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
) -> dict[str, OnGrid]:
    """Each member's ``(t, value)`` series with ≥ 2 points, resampled on the window grid."""
    start = now - config.window_s
    grid = window_grid(now, config)
    members: dict[str, OnGrid] = {}
    for member, samples in series.items():
        chosen = sorted((t, v) for t, v in samples if t <= now and math.isfinite(t) and math.isfinite(v))
        # The last value before the window still holds at its start.
        before = [item for item in chosen if item[0] < start]
        inside = [item for item in chosen if item[0] >= start]
        kept = ([(start, before[-1][1])] if before and hold else []) + inside
        if len(kept) >= 2:
            array = np.array(kept, dtype=np.float64)
            members[member] = on_grid(array[:, 0], array[:, 1], grid, hold=hold)
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
