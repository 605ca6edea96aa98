"""Consent: what a person agreed may be *stored*, from their connection token's ``consent`` claim.

Pure. The claim is a JSON list of kinds:

==============  ===========================================================================
kind            what it allows to be stored
==============  ===========================================================================
``biometrics``  body readings (heart rate, HRV, breathing, camera PPG, motion) kept in channel
                history (``bio:#<user>``) beyond the live moment
``emotions``    emotional self-reports and inferred states: ``state_changed`` and
                ``question_asked`` events in the event log, state messages kept in room history
``graph``       the person's nodes and relations in the Neo4j graph (projected from the log)
==============  ===========================================================================

**Absence of the claim means no consent to any kind** (health data needs explicit consent, GDPR
Art. 9(2)(a)). The live features still work for that connection — readings are computed and
published, states are shared with the room as they happen — but nothing of those kinds is kept: a
publication goes out without history, an event is not logged, a graph node is not written. A
worker may opt out of requiring the claim (``RESONANCE_DATA__CONSENT_REQUIRED=false``, for
development or a deployment that records consent elsewhere); a missing claim then counts as consent
to every kind. A claim that is not a list of known kinds makes the token invalid (the client learns
at once), never silently ignored. Nothing medical is claimed.
"""

from __future__ import annotations

from enum import StrEnum


class DataKind(StrEnum):
    BIOMETRICS = "biometrics"
    EMOTIONS = "emotions"
    GRAPH = "graph"


ALL_KINDS: frozenset[DataKind] = frozenset(DataKind)


class ConsentError(ValueError):
    """A ``consent`` claim that is not a list of known kinds."""


def parse_claim(claim: object) -> frozenset[DataKind] | None:
    """The kinds in a token's ``consent`` claim; None when the claim is absent (``claim is None``)."""
    if claim is None:
        return None
    if not isinstance(claim, list) or not all(isinstance(kind, str) for kind in claim):
        raise ConsentError("consent must be a list of strings")
    known = {kind.value for kind in DataKind}
    unknown = sorted(set(claim) - known)
    if unknown:
        raise ConsentError(f"unknown consent kinds {unknown}; known: {sorted(known)}")
    return frozenset(DataKind(kind) for kind in claim)


def granted(claim: frozenset[DataKind] | None, *, required: bool) -> frozenset[DataKind]:
    """What may be stored for a connection whose token carried ``claim`` (None: no claim)."""
    if claim is None:
        return frozenset() if required else ALL_KINDS
    return claim
