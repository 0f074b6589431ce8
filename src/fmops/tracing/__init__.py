"""Tracing: spans of every model call, written off the request path."""

from fmops.tracing.writer import TraceWriter

__all__ = ["TraceWriter"]
