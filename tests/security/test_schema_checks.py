"""Issue 7, item 9: every schemathesis check runs against the API.

tests/server/test_schemathesis.py fuzzes every operation on both backends with schemathesis'
fuzzing phase and all its response checks. Three checks only act on cases of the coverage
phase: `unsupported_method` (an undeclared method gets a 405), `allow_header_conformance` (that
405's Allow header lists exactly the documented methods) and `missing_required_header`. The
first two are checked here directly, for every path and method, cheaply; the full coverage phase
(about 2,300 requests, every check but the fuzz test's `positive_data_acceptance`, whose
allowance for semantic 400s lives there) runs with FMOPS_TEST_LONG=1.

A path may be served by a second template (`/api/alerts/events` is also `/api/alerts/{rule_id}`
with rule_id "events", `/api/projects/current` is `/api/projects/{project_id}`): its methods are
then the union of both, as the router really serves; schemathesis, reading one template at a
time, cannot know that, so the long run leaves those paths out of its two method checks.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.engine import events, from_schema

from support.security import bearer, raw_request
from support.server import RunningServer
from support.services import long_only

pytestmark = pytest.mark.parametrize("secured", ["sqlite"], indirect=True)  # routing is backend-free
METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


def _template_regex(template: str) -> re.Pattern[str]:
    # `{alias}` of /api/models/{alias} and /v1/models/{model_id} are `:path` parameters (may hold /).
    pattern = re.sub(r"\{(alias|model_id)\}", "(.+)", template)
    return re.compile("^" + re.sub(r"\{[^}]+\}", "([^/]+)", pattern) + "$")


def test_undeclared_methods_are_405_with_the_served_methods(secured: RunningServer) -> None:
    paths: dict[str, Any] = httpx.get(secured.url + "/openapi.json", timeout=30).json()["paths"]
    served = {template: {m.upper() for m in item} for template, item in paths.items()}
    checked = 0
    for template in paths:
        concrete = re.sub(r"\{[^}]+\}", "0", template)
        allowed = set().union(*(ms for t, ms in served.items() if _template_regex(t).match(concrete)))
        for method in sorted(METHODS - allowed):
            response = raw_request(secured, method, concrete, bearer(secured.admin_key))
            assert response.status == 405, (method, concrete, response.status, response.body[:200])
            listed = {m.strip() for m in response.headers.get("allow", "").split(",") if m.strip()}
            assert listed == allowed, (method, concrete, listed, allowed)
            checked += 1
    assert checked > 150


@long_only
def test_schemathesis_coverage_phase(secured: RunningServer) -> None:
    auth = {"Authorization": f"Bearer {secured.admin_key}"}
    schema = schemathesis.openapi.from_url(secured.url + "/openapi.json", headers=auth)
    schema.config.update(base_url=secured.url, headers=auth)
    phases = schema.config.phases
    phases.examples.enabled = phases.fuzzing.enabled = phases.stateful.enabled = False
    phases.coverage.enabled = True
    failures: dict[tuple[str, str], str] = {}
    ran: set[str] = set()
    interactions = 0
    for event in from_schema(schema).execute():
        if not isinstance(event, events.ScenarioFinished):
            continue
        interactions += len(event.recorder.interactions)
        for results in event.recorder.checks.values():
            for check in results:
                ran.add(check.name)
                if check.status.name == "FAILURE" and check.name != "positive_data_acceptance":
                    info = check.failure_info
                    failures.setdefault(
                        (str(event.label), check.name), str(info.failure)[:300] if info else ""
                    )
    # Shadowed paths (see the module docstring) are routed to their parameter twin, not refused.
    templates = list(httpx.get(secured.url + "/openapi.json", timeout=30).json()["paths"])
    shadowed = {t for t in templates if any(o != t and _template_regex(o).match(t) for o in templates)}
    method_checks = {"unsupported_method", "allow_header_conformance"}
    failures = {
        k: v for k, v in failures.items() if not (k[1] in method_checks and k[0].split()[1] in shadowed)
    }
    assert {"unsupported_method", "allow_header_conformance", "missing_required_header"} <= ran
    assert interactions > 1000
    assert failures == {}, "\n".join(f"{k}: {v}" for k, v in failures.items())
    assert '" 500' not in secured.log_text()
