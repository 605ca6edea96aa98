"""Resonance worker: a Centrifugo-protocol WebSocket server for resonance apps.

Layers, outermost first (enforced by ``.importlinter``):

- ``transport`` — the only place that imports aiohttp: HTTP routes, the
  WebSocket driver loop, health probes, the server API.
- ``engines`` — the only place that imports redis: the in-memory engine for a
  single node and the Redis engine for many pods, behind one interface.
- ``domain`` — sans-I/O: pure, synchronous code. Time is passed in; it never
  touches sockets, the clock or the event loop.
- ``settings``, ``errors``, ``metrics``, ``log`` — shared leaves.
"""

__version__ = "0.1.0"
