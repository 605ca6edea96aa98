"""Load tool: Centrifugo-protocol connections, rooms, publish-to-receive latency, server memory and CPU."""
