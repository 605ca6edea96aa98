"""The living core's RPC methods: the one table of what a client can call.

To add a method: write its handler (``async def handler(call: RpcCall) -> Any``, raising
:class:`~resonance_worker.rpc.RpcError` with a protocol code for a refusal) as a method of
:class:`~resonance_worker.living.core.Living` next to the service it uses, and add its name here.
``create_app`` gives the node this table (the built-in ``echo``/``whoami`` and methods passed to
``create_app`` win over a name here). Document it in docs/protocol.md, "The living core".
"""

from __future__ import annotations

from resonance_worker.living.core import Living
from resonance_worker.rpc import RpcHandler


def living_methods(living: Living) -> dict[str, RpcHandler]:
    """Every RPC method of the living core (with ``graph.*`` when the graph is configured)."""
    methods: dict[str, RpcHandler] = {
        "state.report": living.report_state,
        "state.get": living.current_state,
        "self.reflect": living.reflect,
        "room.join": living.join_room,
        "room.leave": living.leave_room,
        "bio.push": living.push_biometrics,
        "bio.stop": living.stop_biometrics,
        "thyroid.status": living.thyroid_status,
        "events.replay": living.replay,
        "doc.send": living.docs.send,
    }
    if living.graph is not None:
        methods.update(living.graph.rpc_methods())
    return methods
