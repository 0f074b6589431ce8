"""Endpoints: what consumers call; prompt label + model + guardrails + cache + fallbacks + variants."""
