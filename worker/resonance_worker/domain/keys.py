"""Redis key names: a person's state, cluster-wide connection slots, a channel's hash tag. Sans I/O.

Agreed between issues 15 and 18 (``/work/notes/18-keys.md``): per-person keys are hash-tagged by the
user, ``<prefix>.{u:<user>}.<kind>``, so every key of one person sits on one Redis Cluster shard, and
every kind is registered once in :data:`USER_KINDS` - export and erase iterate that tuple, so a new
kind of person state is found by them as soon as it is registered here.

Connection slots (cluster-wide per-address and per-user connection limits) hold connection ids,
not a person's data, and are gone within a minute of the last connection: ``<prefix>.conns.addr.{<a>}``
and ``<prefix>.conns.user.{u:<user>}`` (sorted sets of connection ids scored by their expiry).

In Redis Cluster mode every key of one channel (stream, meta, presence, idempotency keys) and its
sharded pub/sub channel end in :func:`channel_part`, which carries the channel's hash tag: each of the
engine's scripts touches one slot, and ``SPUBLISH`` from inside it is on that slot too.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

from resonance_worker.domain.consent import DataKind


class DataClass(enum.StrEnum):
    """What a kind of person state is, for consent and retention."""

    BIOMETRIC = "biometric"
    EMOTIONAL = "emotional"
    MEMBERSHIP = "membership"


class Shape(enum.StrEnum):
    """The Redis type of a kind's key."""

    STRING = "string"
    LIST = "list"


@dataclass(frozen=True, slots=True)
class UserKind:
    """One kind of per-person key: its name (the key's last part), what it holds, its class and shape."""

    name: str
    holds: str
    data_class: DataClass
    shape: Shape

    @property
    def data_kind(self) -> DataKind | None:
        """Its kind for consent and retention (issue 18); membership is neither."""
        return _DATA_KINDS.get(self.data_class)


_DATA_KINDS = {DataClass.BIOMETRIC: DataKind.BIOMETRICS, DataClass.EMOTIONAL: DataKind.EMOTIONS}

PERSON_STATE = UserKind(
    "person.state",
    "smoothed emotional state per source and the last heart rate (JSON)",
    DataClass.EMOTIONAL,
    Shape.STRING,
)
PERSON_REPORTS = UserKind(
    "person.reports",
    "self-reports behind self-understanding, newest last (JSON per entry)",
    DataClass.EMOTIONAL,
    Shape.LIST,
)
PERSON_BODY = UserKind(
    "person.body",
    "body samples (arousal, heart rate), newest last (JSON per entry)",
    DataClass.BIOMETRIC,
    Shape.LIST,
)
PERSON_BASELINE = UserKind(
    "person.baseline", "the biometric personal baseline (JSON)", DataClass.BIOMETRIC, Shape.STRING
)
PERSON_ROOMS = UserKind(
    "person.rooms", "the resonance rooms the person is in (JSON list)", DataClass.MEMBERSHIP, Shape.STRING
)

USER_KINDS: tuple[UserKind, ...] = (PERSON_STATE, PERSON_REPORTS, PERSON_BODY, PERSON_BASELINE, PERSON_ROOMS)
"""Every kind of per-person key (export and erase iterate it)."""


def user_tag(user: str) -> str:
    """The hash tag of one person's keys (``{u:<user>}``): every key of one person on one Cluster slot.

    Redis Cluster hashes the text between a key's first ``{`` and the first ``}`` after it, so a user
    id holding a brace would end the tag early (``a}x`` would share the slot of ``a``, and anyone could
    steer their keys onto another's shard): such an id is tagged by its SHA-1 (``{h:<hex>}``, which no
    ``u:`` tag can equal) instead.
    """
    if "{" in user or "}" in user:
        return "{h:" + hashlib.sha1(user.encode("utf-8")).hexdigest() + "}"
    return "{u:" + user + "}"


def user_key(prefix: str, user: str, kind: UserKind) -> str:
    """``<prefix>.{u:<user>}.<kind>``."""
    return f"{prefix}.{user_tag(user)}.{kind.name}"


class SlotScope(enum.StrEnum):
    """What a cluster-wide connection slot counts connections of."""

    ADDRESS = "addr"
    USER = "user"


def slot_key(prefix: str, scope: SlotScope, subject: str) -> str:
    """The sorted set of live connection ids of one client address or one user."""
    tag = user_tag(subject) if scope is SlotScope.USER else "{" + subject + "}"
    return f"{prefix}.conns.{scope.value}.{tag}"


def channel_part(channel: str) -> str:
    """A channel's name inside its Cluster keys: ``{<channel>}``, so all its keys share one slot. A
    channel holding ``{`` or ``}`` would end that tag early: it is ``{#<sha1>}<channel>``, tagged by
    its SHA-1, instead (so it still has exactly one slot, and :func:`channel_of_part` finds it back)."""
    if "{" in channel or "}" in channel:
        return "{#" + hashlib.sha1(channel.encode("utf-8")).hexdigest() + "}" + channel
    return "{" + channel + "}"


def channel_of_part(part: str) -> str:
    """The channel whose :func:`channel_part` is ``part`` (a plain tag holds one ``}``, at its end)."""
    if part.endswith("}") and part.count("}") == 1:
        return part[1:-1]
    return part[43:]  # "{#" + 40 hex digits + "}"
