"""Sans-I/O domain code: synchronous and pure. Time is passed in as ``now``;
nothing here touches sockets, the clock or an event loop."""
