"""The rule book for requests: every request a client or a back end can send, as a frozen
dataclass, parsed once by one function that raises one typed error.

- ``rules``: ``RequestError`` and the field rules (what a channel, an offset, a stream position,
  a history limit, a token, a ``data`` field must be) with the namespace rules shared by both
  paths (an unknown namespace, presence or history switched off, the history limit cap).
- ``client``: the client protocol's commands (``connect`` ... ``sub_refresh``), ``Command``
  (one decoded command for the session) and ``CLIENT_REQUESTS``, the parser of each method.
- ``server``: the server API's methods (``POST /api/<method>``) and ``SERVER_REQUESTS``.

The session and the server API read fields only through these parsers, so a rule lives in one
place; ``docs/protocol.md`` ("Request rules") lists them and the tests pin each rule on both paths.
To add a field: read it in the parser with a rule of ``rules`` (or add the rule there), give the
request dataclass the typed field, and use it in the session handler or the API method.
"""
