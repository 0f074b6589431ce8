"""Guardrails: checks before and after the model (PII, secrets, injection, topics, schema, a judge), run as
policies on the project, a model or an endpoint, on every path a call can take."""
