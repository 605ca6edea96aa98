"""Feature flags and experiments, sans-I/O: definitions, validation, targeting, evaluation, gates.

A flag set is a list of flag definitions (the CR's ``spec.features``, rendered by the operator
into a file the workers read, see ``resonance_worker.transport.features``)::

    - name: new-lobby            # [a-z0-9][a-z0-9._-]*, unique
      enabled: true              # false: off for everyone (a kill switch)
      rollout: 25                # percent of the eligible users it is on for (0-100; default 100)
      variants:                  # optional: a multi-variant experiment; weights sum to 100
        - {name: control, weight: 50}
        - {name: question, weight: 50}
      salt: lobby-2026           # optional: re-buckets everyone (default: the flag's name)
      targeting:                 # optional: who is eligible; every listed criterion must match
        users: [alice]           # user ids
        tenants: [acme]
        platforms: [js, python]  # the client's name from its connect command (Centrifugo ``name``)
        claims: {plan: [pro]}    # token claim name: the values that match
      gates: {rpc: [room.join], namespaces: [beta]}   # refused for users the flag is off for
      outcomes: [room.join]      # RPC methods counted as this experiment's outcomes

Evaluating a flag for a connection's context (:class:`FeatureContext`) gives ``True``/``False``
for a plain flag and the variant's name (or ``False`` when off) for a multi-variant one.

Targeting is stable: a user's bucket is a hash of the flag's salt and the user (tenant/user id)
into [0, 1), so a user keeps their answer across connections and workers, a rollout raised from
10 to 20 % keeps the first 10 % in, and flags are independent (each has its own salt). The variant
is picked with a second hash (salt + ``:variant``), so changing the rollout never moves a user
between variants. Anonymous connections are bucketed by their client id (stable for a connection).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_FLAGS = 100
"""Flags in one set (with the limits below, the metrics' label values stay bounded)."""
MAX_VARIANTS = 16
MAX_OUTCOMES = 16
MAX_LIST = 1000
"""Entries in one targeting list or gate list."""
NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,62})$")
"""A flag's or a variant's name (also a Prometheus label value)."""
FEATURES_CHANNEL = "system:features"
"""Where a client hears its evaluated flags again when the flag set changes."""
OUTCOME_METHOD = "features.outcome"
"""The RPC method a client reports an outcome with (``{"outcome": name}``)."""

Value = bool | str
"""A flag's value for one connection: on/off, or the variant's name (False when off)."""


class FeatureSetError(ValueError):
    """A flag set that cannot be applied: ``errors`` name the flag of each problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    weight: int


@dataclass(frozen=True, slots=True)
class Targeting:
    """Who is eligible: every criterion given must match (None: not a criterion)."""

    users: frozenset[str] | None = None
    tenants: frozenset[str] | None = None
    platforms: frozenset[str] | None = None
    claims: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Flag:
    name: str
    enabled: bool = True
    rollout: float = 100.0
    variants: tuple[Variant, ...] = ()
    salt: str = ""
    targeting: Targeting = Targeting()
    gated_rpc: frozenset[str] = frozenset()
    gated_namespaces: frozenset[str] = frozenset()
    outcomes: frozenset[str] = frozenset()

    @property
    def seed(self) -> str:
        return self.salt or self.name


@dataclass(frozen=True, slots=True)
class FeatureContext:
    """What targeting looks at for one connection."""

    user: str = ""
    tenant: str = ""
    platform: str = ""
    claims: Mapping[str, Any] = field(default_factory=dict)
    client: str = ""
    """Buckets an anonymous connection (no user)."""

    @property
    def key(self) -> str:
        """The bucketing key: the tenant and user, or the client id for an anonymous connection."""
        if not self.user:
            return f"~client/{self.client}"
        return f"{self.tenant}/{self.user}"


def bucket(seed: str, key: str) -> float:
    """A stable, uniform point in [0, 1) for ``key`` under ``seed`` (the first 8 bytes of SHA-256)."""
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _claim_values(value: Any) -> set[str]:
    if isinstance(value, bool):
        return {"true" if value else "false"}
    if isinstance(value, str | int | float):
        return {str(value)}
    if isinstance(value, list):
        return {v for item in value if isinstance(item, str | int | float) for v in _claim_values(item)}
    return set()


def eligible(targeting: Targeting, context: FeatureContext) -> bool:
    if targeting.users is not None and context.user not in targeting.users:
        return False
    if targeting.tenants is not None and context.tenant not in targeting.tenants:
        return False
    if targeting.platforms is not None and context.platform not in targeting.platforms:
        return False
    for claim, allowed in targeting.claims.items():
        if not (_claim_values(context.claims.get(claim)) & allowed):
            return False
    return True


def evaluate(flag: Flag, context: FeatureContext) -> Value:
    """``flag``'s value for ``context``: False when off, else True or the variant's name."""
    if not flag.enabled or not eligible(flag.targeting, context):
        return False
    key = context.key
    if flag.rollout < 100 and bucket(flag.seed, key) * 100 >= flag.rollout:
        return False
    if not flag.variants:
        return True
    point = bucket(flag.seed + ":variant", key) * 100
    edge = 0.0
    for variant in flag.variants:
        edge += variant.weight
        if point < edge:
            return variant.name
    return flag.variants[-1].name


@dataclass(frozen=True, slots=True)
class FeatureSet:
    """A validated flag set: evaluation for a context and the gate map."""

    flags: tuple[Flag, ...] = ()
    version: str = "empty"
    """A digest of the definitions (changes when any flag does)."""
    gated_rpc: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """RPC method: the flags that gate it (every one must be on)."""
    gated_namespaces: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Channel namespace: the flags that gate it (every one must be on)."""
    by_name: Mapping[str, Flag] = field(default_factory=dict)
    outcomes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Outcome (an RPC method or a reported name): the flags that count it."""

    def evaluate(self, context: FeatureContext) -> dict[str, Value]:
        """Every flag's value for ``context``."""
        return {flag.name: evaluate(flag, context) for flag in self.flags}

    def _refusing(self, flags: Iterable[str], context: FeatureContext) -> str | None:
        for name in flags:
            if evaluate(self.by_name[name], context) is False:
                return name
        return None

    def refuses_rpc(self, method: str, context: FeatureContext) -> str | None:
        """The flag that keeps ``method`` from ``context`` (None: allowed)."""
        gating = self.gated_rpc.get(method)
        return None if gating is None else self._refusing(gating, context)

    def refuses_channel(self, channel: str, context: FeatureContext) -> str | None:
        """The flag that keeps ``channel``'s namespace from ``context`` (None: allowed). The
        namespace comes first under tenant isolation too (``ns:tenant/name``)."""
        if not self.gated_namespaces:
            return None
        namespace, sep, _ = channel.partition(":")
        gating = self.gated_namespaces.get(namespace) if sep else None
        return None if gating is None else self._refusing(gating, context)

    def outcome_flags(self, method: str) -> tuple[str, ...]:
        """The flags that count ``method`` as one of their outcomes."""
        return self.outcomes.get(method, ())

    def payload(self, context: FeatureContext) -> dict[str, Any]:
        """What a client is told: the set's version and its evaluated flags."""
        return {"version": self.version, "flags": self.evaluate(context)}


EMPTY = FeatureSet()


# -- parsing and validation -------------------------------------------------------------------

_FLAG_FIELDS = frozenset(
    {"name", "description", "enabled", "rollout", "variants", "salt", "targeting", "gates", "outcomes"}
)
_TARGETING_FIELDS = frozenset({"users", "tenants", "platforms", "claims"})
_GATE_FIELDS = frozenset({"rpc", "namespaces"})


class _Errors:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, flag: str, message: str) -> None:
        self.items.append(f"feature {flag!r}: {message}")


def _strings(value: Any, what: str, flag: str, errors: _Errors) -> frozenset[str] | None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        errors.add(flag, f"{what} must be a list of non-empty strings")
        return None
    if len(value) > MAX_LIST:
        errors.add(flag, f"{what} holds more than {MAX_LIST} entries")
        return None
    return frozenset(value)


def _unknown(given: Mapping[str, Any], known: frozenset[str], where: str, flag: str, errors: _Errors) -> None:
    extra = sorted(set(given) - known)
    if extra:
        errors.add(flag, f"unknown field{'s' if len(extra) > 1 else ''} in {where}: {', '.join(extra)}")


def _targeting(raw: Any, flag: str, errors: _Errors) -> Targeting:
    if raw is None:
        return Targeting()
    if not isinstance(raw, Mapping):
        errors.add(flag, "targeting must be an object")
        return Targeting()
    _unknown(raw, _TARGETING_FIELDS, "targeting", flag, errors)
    lists: dict[str, frozenset[str] | None] = {}
    for name in ("users", "tenants", "platforms"):
        given = raw.get(name)
        lists[name] = None if given is None else _strings(given, f"targeting.{name}", flag, errors)
    claims: dict[str, frozenset[str]] = {}
    raw_claims = raw.get("claims") or {}
    if not isinstance(raw_claims, Mapping):
        errors.add(flag, "targeting.claims must map a claim's name to its matching values")
    else:
        for claim, values in raw_claims.items():
            parsed = _strings(values, f"targeting.claims.{claim}", flag, errors)
            if parsed is not None:
                claims[str(claim)] = parsed
    return Targeting(lists["users"], lists["tenants"], lists["platforms"], claims)


def _variants(raw: Any, flag: str, errors: _Errors) -> tuple[Variant, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        errors.add(flag, "variants must be a non-empty list of {name, weight}")
        return ()
    if len(raw) > MAX_VARIANTS:
        errors.add(flag, f"more than {MAX_VARIANTS} variants")
        return ()
    out: list[Variant] = []
    for entry in raw:
        if not isinstance(entry, Mapping) or set(entry) - {"name", "weight"}:
            errors.add(flag, "each variant is {name, weight}")
            return ()
        name, weight = entry.get("name"), entry.get("weight")
        if not isinstance(name, str) or not NAME.match(name):
            errors.add(flag, f"variant name {name!r} must match {NAME.pattern}")
            return ()
        if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= 100:
            errors.add(flag, f"variant {name!r}: weight must be an integer 0-100")
            return ()
        out.append(Variant(name, weight))
    names = [v.name for v in out]
    if len(set(names)) != len(names):
        errors.add(flag, "variant names must be unique")
    total = sum(v.weight for v in out)
    if total != 100:
        errors.add(flag, f"variant weights must sum to 100 (they sum to {total})")
    return tuple(out)


def _flag(raw: Any, index: int, errors: _Errors) -> Flag | None:
    if not isinstance(raw, Mapping):
        errors.add(f"#{index}", "a flag must be an object")
        return None
    name = raw.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        errors.add(f"#{index}" if not isinstance(name, str) else name, f"the name must match {NAME.pattern}")
        return None
    before = len(errors.items)
    _unknown(raw, _FLAG_FIELDS, "the flag", name, errors)
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        errors.add(name, "enabled must be true or false")
    rollout = raw.get("rollout", 100)
    if not isinstance(rollout, int | float) or isinstance(rollout, bool) or not 0 <= rollout <= 100:
        errors.add(name, f"rollout must be a percentage 0-100 (got {rollout!r})")
        rollout = 0
    salt = raw.get("salt", "")
    if not isinstance(salt, str):
        errors.add(name, "salt must be a string")
    variants = _variants(raw.get("variants"), name, errors)
    targeting = _targeting(raw.get("targeting"), name, errors)
    gates = raw.get("gates") or {}
    rpc: frozenset[str] = frozenset()
    namespaces: frozenset[str] = frozenset()
    if not isinstance(gates, Mapping):
        errors.add(name, "gates must be {rpc: [...], namespaces: [...]}")
    else:
        _unknown(gates, _GATE_FIELDS, "gates", name, errors)
        rpc = _strings(gates.get("rpc", []), "gates.rpc", name, errors) or frozenset()
        namespaces = _strings(gates.get("namespaces", []), "gates.namespaces", name, errors) or frozenset()
    outcomes = _strings(raw.get("outcomes", []), "outcomes", name, errors) or frozenset()
    if len(outcomes) > MAX_OUTCOMES:
        errors.add(name, f"more than {MAX_OUTCOMES} outcomes")
    if len(errors.items) > before:
        return None
    return Flag(
        name=name,
        enabled=bool(enabled),
        rollout=float(rollout),
        variants=variants,
        salt=str(salt),
        targeting=targeting,
        gated_rpc=rpc,
        gated_namespaces=namespaces,
        outcomes=outcomes,
    )


def version_of(raw: Any) -> str:
    """A digest of the definitions as given (canonical JSON)."""
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def parse_feature_set(raw: Any) -> FeatureSet:
    """Validate a whole flag set (a list of definitions, or ``{"features": [...]}``).

    Raises :class:`FeatureSetError` listing every problem, each naming its flag; nothing of a
    set with any problem is used."""
    if isinstance(raw, Mapping) and set(raw) <= {"features"}:
        raw = raw.get("features") or []
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise FeatureSetError(["the flag set must be a list of flag definitions"])
    if len(raw) > MAX_FLAGS:
        raise FeatureSetError([f"more than {MAX_FLAGS} flags ({len(raw)})"])
    errors = _Errors()
    flags: list[Flag] = []
    seen: set[str] = set()
    for index, entry in enumerate(raw):
        flag = _flag(entry, index, errors)
        if flag is None:
            continue
        if flag.name in seen:
            errors.add(flag.name, "defined twice (names must be unique)")
            continue
        seen.add(flag.name)
        flags.append(flag)
    if errors.items:
        raise FeatureSetError(errors.items)
    return FeatureSet(
        flags=tuple(flags),
        version=version_of(raw),
        gated_rpc=_index(flags, lambda flag: flag.gated_rpc),
        gated_namespaces=_index(flags, lambda flag: flag.gated_namespaces),
        by_name={flag.name: flag for flag in flags},
        outcomes=_index(flags, lambda flag: flag.outcomes),
    )


def _index(flags: list[Flag], keys: Callable[[Flag], Iterable[str]]) -> dict[str, tuple[str, ...]]:
    """Each key (a method, a namespace, an outcome): the flags, in order, that name it."""
    index: dict[str, list[str]] = {}
    for flag in flags:
        for key in keys(flag):
            index.setdefault(key, []).append(flag.name)
    return {key: tuple(names) for key, names in index.items()}


def parse_feature_text(text: str) -> FeatureSet:
    """A flag set from a file's text: JSON (YAML is JSON's superset; the operator writes JSON)."""
    if not text.strip():
        return parse_feature_set([])
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise FeatureSetError([f"the flag file is not JSON: {exc}"]) from None
    return parse_feature_set(raw)


def exposure_label(value: Value) -> str:
    """A value as the metrics' ``variant`` label: ``on``, ``off`` or the variant's name."""
    if value is True:
        return "on"
    if value is False:
        return "off"
    return value


class FeatureBook:
    """The flag set in force on a worker and what each connection was last told.

    :meth:`replace` swaps the whole set at once (it was validated whole before); :meth:`tell`
    evaluates a connection's flags, remembers them and returns those that are new to it (the
    exposures to count); :meth:`told` is what outcomes are counted against."""

    def __init__(self, features: FeatureSet = EMPTY) -> None:
        self.current = features
        self._told: dict[str, dict[str, Value]] = {}

    def replace(self, features: FeatureSet) -> bool:
        """Put ``features`` in force; False when it is the set already in force."""
        if features.version == self.current.version:
            return False
        self.current = features
        return True

    def tell(self, client: str, context: FeatureContext) -> tuple[dict[str, Any], dict[str, Value]]:
        """``(payload, exposures)``: what ``client`` is told now and the values new to it."""
        payload = self.current.payload(context)
        values: dict[str, Value] = payload["flags"]
        before = self._told.get(client, {})
        self._told[client] = values
        return payload, {name: value for name, value in values.items() if before.get(name, None) != value}

    def told(self, client: str) -> Mapping[str, Value]:
        return self._told.get(client, {})

    def forget(self, client: str) -> None:
        self._told.pop(client, None)
