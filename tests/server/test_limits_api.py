"""Setting limits over HTTP (admin only, partial updates, clear 4xx for bad values) and with
`fmops keys limits`, against a real server."""

from __future__ import annotations

import os
import subprocess

from support.server import FMOPS, RunningServer


def _consumer_key(server: RunningServer, name: str) -> tuple[str, str]:
    with server.client() as admin:
        created = admin.post("/api/keys", json={"name": name, "role": "consumer"})
    assert created.status_code == 201, created.text
    return created.json()["id"], created.json()["key"]


def _listed(server: RunningServer, key_id: str) -> dict[str, object]:
    with server.client() as admin:
        keys = admin.get("/api/keys", params={"all": True}).json()
    return next(k for k in keys if k["id"] == key_id)


def test_admins_set_key_limits_field_by_field(sqlite_server: RunningServer) -> None:
    key_id, _ = _consumer_key(sqlite_server, "limited")
    assert _listed(sqlite_server, key_id)["rpm_limit"] is None
    with sqlite_server.client() as admin:
        set_all = admin.patch(
            f"/api/keys/{key_id}/limits",
            json={"rpm_limit": 5, "tpm_limit": 10_000, "budget": 2.5, "budget_period": "day"},
        )
        assert set_all.status_code == 200, set_all.text
        body = set_all.json()
        assert (body["id"], body["rpm_limit"], body["tpm_limit"], body["budget"], body["budget_period"]) == (
            key_id,
            5,
            10_000,
            2.5,
            "day",
        )
        # Only what is sent changes; null removes a limit.
        partial = admin.patch(f"/api/keys/{key_id}/limits", json={"rpm_limit": None}).json()
        assert (partial["rpm_limit"], partial["tpm_limit"], partial["budget"]) == (None, 10_000, 2.5)
    listed = _listed(sqlite_server, key_id)
    assert (listed["rpm_limit"], listed["budget"], listed["budget_period"]) == (None, 2.5, "day")


def test_bad_limits_are_clear_400s_and_unknown_keys_404(sqlite_server: RunningServer) -> None:
    key_id, _ = _consumer_key(sqlite_server, "bad")
    with sqlite_server.client() as admin:
        for body, field in [
            ({"rpm_limit": 0}, "rpm_limit"),
            ({"tpm_limit": "100"}, "tpm_limit"),
            ({"budget": -1}, "budget"),
            ({"budget_period": "week"}, "budget_period"),
            ({"rpm": 5}, "rpm"),
        ]:
            answer = admin.patch(f"/api/keys/{key_id}/limits", json=body)
            assert answer.status_code == 400, (body, answer.text)
            assert field in answer.json()["error"]["message"]
        missing = admin.patch("/api/keys/nope/limits", json={"rpm_limit": 1})
        assert missing.status_code == 404


def test_only_admins_change_limits(sqlite_server: RunningServer) -> None:
    key_id, plaintext = _consumer_key(sqlite_server, "consumer")
    with sqlite_server.client(plaintext) as consumer:
        own = consumer.patch(f"/api/keys/{key_id}/limits", json={"rpm_limit": 1000})
        project = consumer.patch("/api/projects/current/limits", json={"budget": 1000})
    assert own.status_code == 403
    assert project.status_code == 403
    assert own.json()["error"]["type"] == "permission_error"


def test_project_limits(sqlite_server: RunningServer) -> None:
    with sqlite_server.client() as admin:
        answer = admin.patch("/api/projects/current/limits", json={"tpm_limit": 50_000, "budget": 100})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["name"], body["tpm_limit"], body["budget"], body["budget_period"]) == (
            "default",
            50_000,
            100.0,
            "month",
        )
        shown = admin.get(f"/api/projects/{body['id']}").json()
        assert (shown["tpm_limit"], shown["budget"]) == (50_000, 100.0)
        cleared = admin.patch("/api/projects/current/limits", json={"tpm_limit": None, "budget": None}).json()
        assert (cleared["tpm_limit"], cleared["budget"]) == (None, None)


def _env(server: RunningServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FMOPS_")}
    env["FMOPS_HOME"] = str(server.home)
    return env


def _cli(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FMOPS), "keys", "limits", *args],
        env=_env(server),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _cli_many(server: RunningServer, runs: list[list[str]]) -> list[tuple[int, str]]:
    """Several `fmops keys limits` at once (each CLI start takes seconds): (exit code, output) each."""
    procs = [
        subprocess.Popen(
            [str(FMOPS), "keys", "limits", *args],
            env=_env(server),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for args in runs
    ]
    return [(proc.wait(timeout=60), proc.communicate()[0]) for proc in procs]


def test_cli_sets_key_limits(sqlite_server: RunningServer) -> None:
    key_id, _ = _consumer_key(sqlite_server, "cli")
    done = _cli(sqlite_server, key_id, "--rpm", "7", "--budget", "12.5", "--period", "total")
    assert done.returncode == 0, done.stderr
    assert f"key {key_id} (cli): rpm 7, tpm unlimited, budget 12.5 in total" in done.stdout
    listed = _listed(sqlite_server, key_id)
    assert (listed["rpm_limit"], listed["budget"], listed["budget_period"]) == (7, 12.5, "total")

    # Removing one limit, and two mistakes, at once (each CLI start takes seconds).
    (cleared, cleared_out), (bad, bad_out), (unknown, unknown_out) = _cli_many(
        sqlite_server,
        [[key_id, "--budget", "none"], [key_id, "--rpm", "many"], ["no-such-key", "--rpm", "1"]],
    )
    assert cleared == 0, cleared_out
    assert "budget unlimited" in cleared_out
    listed = _listed(sqlite_server, key_id)
    assert (listed["budget"], listed["rpm_limit"]) == (None, 7)
    assert bad != 0
    assert "'many' is not a number" in bad_out
    assert unknown != 0
    assert "no key with id 'no-such-key'" in unknown_out
