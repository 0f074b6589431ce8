"""Prompt registry: versioned templates, labels, rendering in a sandbox, YAML files."""
