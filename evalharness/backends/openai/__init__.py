"""OpenAI-compatible API backends: the backends, the asyncio HTTP transport, prices."""
