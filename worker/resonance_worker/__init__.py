"""Resonance worker: a Centrifugo-protocol WebSocket server for resonance apps.

Layers, outermost first (enforced by ``.importlinter``):

- ``transport`` — the only place that imports aiohttp: HTTP routes, the
  WebSocket driver loop, health probes, the server API, the wiring (``create_app``).
- ``living`` — the living core (thyroid, states, rooms, biometrics, the graph
  service, the RPC method table); no HTTP.
- ``storage`` — the engine, event log and graph, built once from the settings.
- ``graph`` — the only place that imports neo4j: projector, queries, store.
- ``eventlog`` | ``engines`` — the durable event log; the in-memory engine for a
  single node and the Redis engine for many pods, behind one interface.
- ``domain`` — sans-I/O: pure, synchronous code. Time is passed in; it never
  touches sockets, the clock or the event loop.
- ``settings``, ``living_settings``, ``errors``, ``metrics``, ``rpc``, ``log`` — shared leaves.
"""

__version__ = "0.1.0"
