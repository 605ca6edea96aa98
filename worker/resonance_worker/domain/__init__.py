"""Sans-I/O domain code: synchronous and pure. Time is passed in as ``now``;
nothing here touches sockets, the clock or an event loop.

The client protocol core: ``requests`` (the rule book: each command and server API method as a
typed request with its parser) -> ``session`` (one connection: a handler per request type over
``session_core``'s state, recovery in ``subscriptions``) -> ``operations`` (what the shell must
do, and the outcome it answers with) and ``results`` (replies); ``protocol`` is the JSON codec
between frames and those typed commands and results. To add a command field, start in
``requests``; a new reply field goes in ``results`` and its encoding in ``protocol``.
"""
