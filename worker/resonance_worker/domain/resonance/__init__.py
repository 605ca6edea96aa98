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

The package, one module per concern: :mod:`.measures` (agreement, synchrony, resonance at one
moment), :mod:`.patterns` (trends and leader-follower over a window), :mod:`.monitor` (one room
over time, and when to publish). Its names are re-exported here.
"""

from resonance_worker.domain.resonance.measures import (
    BPM_MAX,
    BPM_MIN,
    HeartRateSample,
    MemberState,
    ResonanceConfig,
    ResonanceInputError,
    RoomResonance,
    Synchrony,
    combine,
    heart_rate_synchrony,
    heart_rate_synchrony_pairwise,
    pearson,
    resample,
    room_resonance,
    state_agreement,
    state_agreement_pairwise,
    window_grid,
)
from resonance_worker.domain.resonance.monitor import (
    PublishReason,
    ResonancePublisher,
    RoomMonitor,
    RoomTick,
)
from resonance_worker.domain.resonance.patterns import (
    PatternKind,
    RoomPattern,
    detect_agreement_trend,
    detect_leader_follower,
    detect_leader_follower_pairwise,
    lagged_correlations,
)

__all__ = [
    "BPM_MAX",
    "BPM_MIN",
    "HeartRateSample",
    "MemberState",
    "PatternKind",
    "PublishReason",
    "ResonanceConfig",
    "ResonanceInputError",
    "ResonancePublisher",
    "RoomMonitor",
    "RoomPattern",
    "RoomResonance",
    "RoomTick",
    "Synchrony",
    "combine",
    "detect_agreement_trend",
    "detect_leader_follower",
    "detect_leader_follower_pairwise",
    "heart_rate_synchrony",
    "heart_rate_synchrony_pairwise",
    "lagged_correlations",
    "pearson",
    "resample",
    "room_resonance",
    "state_agreement",
    "state_agreement_pairwise",
    "window_grid",
]
