"""Channel names, namespaces and their options (Centrifugo's model).

A channel ``ns:rest`` belongs to namespace ``ns``; a channel without ``:``
belongs to the default namespace. ``rest#alice,bob`` is user-limited: only
users ``alice`` and ``bob`` may subscribe (when the namespace allows it) - a
personal queue ``personal:#alice`` keeps what was sent while its user was
offline. A channel starting with ``$`` (after the namespace) is private: a
subscription token is always required.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

NAMESPACE_BOUNDARY = ":"
USER_BOUNDARY = "#"
USER_SEPARATOR = ","
PRIVATE_PREFIX = "$"


class NamespaceOptions(BaseModel):
    """What a namespace's channels do and who may do what in them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    presence: bool = Field(False, description="Keep who is subscribed (presence, presence_stats).")
    join_leave: bool = Field(False, description="Send join/leave pushes to subscribers who ask for them.")
    force_push_join_leave: bool = Field(False, description="Send join/leave pushes to every subscriber.")
    history_size: int = Field(0, ge=0, description="Publications kept per channel (0: no history).")
    history_ttl_seconds: float = Field(0.0, ge=0, description="How long kept publications live.")
    history_meta_ttl_seconds: float = Field(
        0.0, ge=0, description="How long a channel's epoch outlives its last publication (0: engine default)."
    )
    allow_recovery: bool = Field(False, description="Clients may ask for recovery (needs history).")
    force_recovery: bool = Field(False, description="Every subscription is recoverable (needs history).")
    allow_positioning: bool = Field(False, description="Clients may ask for positioning (needs history).")
    force_positioning: bool = Field(False, description="Every subscription is positioned (needs history).")
    allow_subscribe_for_client: bool = Field(
        False, description="Authenticated clients may subscribe without a subscription token."
    )
    allow_subscribe_for_anonymous: bool = Field(False, description="Anonymous clients may subscribe too.")
    allow_publish_for_subscriber: bool = Field(False, description="Subscribers may publish.")
    allow_publish_for_client: bool = Field(False, description="Any authenticated client may publish.")
    allow_publish_for_anonymous: bool = Field(False, description="Anonymous clients may publish too.")
    allow_presence_for_subscriber: bool = Field(False, description="Subscribers may query presence.")
    allow_presence_for_client: bool = Field(False, description="Any authenticated client may query presence.")
    allow_history_for_subscriber: bool = Field(False, description="Subscribers may query history.")
    allow_history_for_client: bool = Field(False, description="Any authenticated client may query history.")
    allow_user_limited_channels: bool = Field(
        False, description="`#user1,user2` in a channel name limits it to those users."
    )

    @property
    def has_history(self) -> bool:
        return self.history_size > 0 and self.history_ttl_seconds > 0


def default_namespaces() -> dict[str, NamespaceOptions]:
    """What ``make run`` serves with no configuration: a ``chat`` an SDK
    quickstart can use, ``typing`` indicators without history, and per-user
    ``personal:#<user>`` queues that keep what arrived while the user was away."""
    return {
        "chat": NamespaceOptions(
            presence=True,
            join_leave=True,
            history_size=100,
            history_ttl_seconds=300.0,
            force_recovery=True,
            force_positioning=True,
            allow_subscribe_for_client=True,
            allow_publish_for_subscriber=True,
            allow_presence_for_subscriber=True,
            allow_history_for_subscriber=True,
        ),
        "typing": NamespaceOptions(
            presence=False,
            join_leave=False,
            allow_subscribe_for_client=True,
            allow_publish_for_subscriber=True,
        ),
        "personal": NamespaceOptions(
            history_size=1000,
            history_ttl_seconds=86400.0,
            force_recovery=True,
            force_positioning=True,
            allow_user_limited_channels=True,
            allow_subscribe_for_client=True,
            allow_history_for_subscriber=True,
        ),
    }


class ChannelRules:
    """Resolves a channel to its namespace options."""

    def __init__(
        self,
        namespaces: Mapping[str, NamespaceOptions],
        default: NamespaceOptions | None = None,
        *,
        max_channel_length: int = 255,
    ) -> None:
        self.namespaces = dict(namespaces)
        self.default = default if default is not None else NamespaceOptions()
        self.max_channel_length = max_channel_length

    @staticmethod
    def namespace_of(channel: str) -> str:
        name, sep, _ = channel.partition(NAMESPACE_BOUNDARY)
        return name if sep else ""

    def options(self, channel: str) -> NamespaceOptions | None:
        """The namespace options, or ``None`` for an unknown namespace."""
        namespace = self.namespace_of(channel)
        if not namespace:
            return self.default
        return self.namespaces.get(namespace)

    def valid_name(self, channel: str) -> bool:
        return 0 < len(channel) <= self.max_channel_length and "\n" not in channel

    @staticmethod
    def is_private(channel: str) -> bool:
        _, sep, rest = channel.partition(NAMESPACE_BOUNDARY)
        return (rest if sep else channel).startswith(PRIVATE_PREFIX)

    @staticmethod
    def allowed_users(channel: str) -> frozenset[str] | None:
        """Users of a user-limited channel, or ``None`` if it is not user-limited."""
        if USER_BOUNDARY not in channel:
            return None
        users = channel.rsplit(USER_BOUNDARY, 1)[1]
        return frozenset(u for u in users.split(USER_SEPARATOR) if u)

    @staticmethod
    def personal_channel(user: str) -> str:
        return f"personal{NAMESPACE_BOUNDARY}{USER_BOUNDARY}{user}"
