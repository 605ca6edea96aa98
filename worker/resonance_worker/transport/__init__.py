"""HTTP and WebSocket transport: the only package that imports aiohttp.

Layers inside it, top to bottom (an import-linter contract keeps them):

- ``app`` — ``create_app``/``build_worker``: builds the storage, the living core and the node in
  order and adds every route; the health, readiness, metrics and token routes.
- ``api`` | ``ws`` | ``living`` — the server API (``POST /api/<method>``), the WebSocket driver
  (``/connection/websocket``), the living core's routes, middleware and loops.
- ``keys`` — every app key (``NODE``, ``STORAGE``, ``DRAINER``, ...), typed.
- ``drain`` | ``positions`` — the drainer and ``/drain``; the periodic position check.
- ``node`` — connections, local subscriptions and fan-out; the operations sessions ask for.
- ``http`` | ``background`` | ``timers`` | ``audit`` — the API key check, the error envelope and
  JSON responses; tasks that live with the app; the sessions' timers; the audit log.

Outside the layers: ``proxyproto`` — the listener that reads a PROXY protocol header from trusted
proxies before aiohttp sees a connection (``settings.proxy_protocol``; used by ``__main__``).

A new API route takes its key check, body and error responses from ``http``; a new background
task starts with ``background.run_in_background``; a new app key goes in ``keys``.
"""
