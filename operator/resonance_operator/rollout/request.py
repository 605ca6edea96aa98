"""The ``resonance.liminal.dev/rollout-action`` annotation: what a person asks the machine to do.

Pure. The rollout pass reads the annotation with :func:`parse_request` and hands the
:class:`Request` to :func:`~resonance_operator.rollout.plan.decide` in
:class:`~resonance_operator.rollout.decision.Observed`; the decision says whether it
was handled, and then the pass removes the annotation.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

ACTION_ANNOTATION = "resonance.liminal.dev/rollout-action"


class Request(enum.StrEnum):
    """Values of the ``resonance.liminal.dev/rollout-action`` annotation."""

    PROMOTE = "promote"
    """Finish the current step now (end a pause, accept an inconclusive analysis, promote a preview)."""
    PROMOTE_FULL = "promote-full"
    """Skip every remaining step and promote."""
    ABORT = "abort"
    """Roll back: new connections go to stable at once, the canary drains."""
    RETRY = "retry"
    """Start an aborted rollout again from its first step, or rerun an inconclusive analysis."""


class UnknownRequestError(ValueError):
    """The annotation holds a value that is not a :class:`Request`."""


def parse_request(annotations: Mapping[str, str] | None) -> Request | None:
    """The request in the annotation, if any.

    >>> parse_request({ACTION_ANNOTATION: " Promote "})
    <Request.PROMOTE: 'promote'>
    """
    raw = (annotations or {}).get(ACTION_ANNOTATION)
    if raw is None or not raw.strip():
        return None
    try:
        return Request(raw.strip().lower())
    except ValueError:
        allowed = ", ".join(r.value for r in Request)
        raise UnknownRequestError(f"{ACTION_ANNOTATION}: {raw!r} is not one of {allowed}") from None
