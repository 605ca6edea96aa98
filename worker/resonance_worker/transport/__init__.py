"""HTTP and WebSocket transport: the only package that imports aiohttp."""
