"""Test support code: importable as `support` (tests/ is on pythonpath)."""
