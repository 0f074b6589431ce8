"""The web UI: the consumers' chat at `/` and the engineers' console at `/console`.

Server-rendered Jinja2 templates with HTMX (vendored, no CDN, no front-end build); see
`fmops.web.app.install_web` for how it joins the API's FastAPI application, and `fmops.web.pages`
for how a console page is added.
"""
