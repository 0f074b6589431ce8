"""HTTP interface: the FastAPI app (`fmops.server.app.create_app`), routers, API-key auth, error mapping.

The platform it serves lives in `fmops.platform`, shared with the web UI and the CLI.
"""
