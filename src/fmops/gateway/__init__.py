"""The gateway service: one OpenAI-compatible call path with routing, limits, caching, spend and tracing."""
