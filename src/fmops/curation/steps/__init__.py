"""The built-in curation steps; each is registered through the `fmops.curation` entry points."""
