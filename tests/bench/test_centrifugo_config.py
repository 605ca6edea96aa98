"""The Centrifugo v6 config the benchmark writes (the real server loads it in test_against_centrifugo)."""

from __future__ import annotations

import pytest
from resonance_worker.domain.channels import default_namespaces

from bench.centrifugo.config import Engine, centrifugo_config


def test_memory_config_has_loopback_auth_api_and_chat() -> None:
    config = centrifugo_config(port=8123, token_secret="sec", api_key="key")
    assert config["http_server"] == {"address": "127.0.0.1", "port": 8123}
    assert config["client"]["token"] == {"hmac_secret_key": "sec"}
    assert config["http_api"] == {"key": "key"}
    assert config["engine"] == {"type": "memory"}
    (chat,) = config["channel"]["namespaces"]
    assert chat["name"] == "chat"


def test_redis_config_points_at_the_given_redis() -> None:
    config = centrifugo_config(
        port=8123, token_secret="s", api_key="k", engine=Engine.REDIS, redis_url="redis://127.0.0.1:7/0"
    )
    assert config["engine"] == {
        "type": "redis",
        "redis": {"address": ["redis://127.0.0.1:7/0"], "prefix": "centrifugo-bench"},
    }


def test_chat_namespace_does_what_the_worker_chat_namespace_does() -> None:
    (chat,) = centrifugo_config(port=1, token_secret="s", api_key="k")["channel"]["namespaces"]
    ours = default_namespaces()["chat"]
    assert chat["history_size"] == ours.history_size
    assert chat["history_ttl"] == f"{ours.history_ttl_seconds:.0f}s"
    for option in (
        "presence",
        "join_leave",
        "force_recovery",
        "force_positioning",
        "allow_subscribe_for_client",
        "allow_publish_for_subscriber",
        "allow_presence_for_subscriber",
        "allow_history_for_subscriber",
    ):
        assert chat[option] == getattr(ours, option), option


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"engine": Engine.REDIS}, "redis_url"), ({"port": 0}, "port"), ({"port": 70000}, "port")],
)
def test_bad_configs_are_refused(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"port": 8000, "token_secret": "s", "api_key": "k", **kwargs}
    with pytest.raises(ValueError, match=message):
        centrifugo_config(**arguments)  # type: ignore[arg-type]
