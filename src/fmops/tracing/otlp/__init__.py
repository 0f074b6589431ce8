"""OpenTelemetry in and out: OTLP/HTTP trace ingest (decode, mapping) and export (encode, export)."""

from fmops.tracing.otlp.export import OtlpExporter
from fmops.tracing.otlp.ingest import Ingested, ingest, response_body

__all__ = ["Ingested", "OtlpExporter", "ingest", "response_body"]
