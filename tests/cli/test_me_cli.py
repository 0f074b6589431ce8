"""`fmops me` (custom instructions and saved prompts, through a running server as the key's user) and
`fmops prompts promote-shared` (on the server's own home), through the console script's `main()`."""

from __future__ import annotations

import json

from support.browser import create_user_key
from support.cli_runs import run_session, session_env
from support.server import RunningServer


def test_me_instructions_prompts_and_promotion(sqlite_server: RunningServer) -> None:
    key = create_user_key(sqlite_server, "mia", "consumer")
    env = session_env(sqlite_server.home) | {"FMOPS_URL": sqlite_server.url, "FMOPS_API_KEY": key}
    commands = [
        ["me", "instructions", "show"],
        ["me", "instructions", "set", "--about", "I run a bakery.", "--style", "Answer in a list."],
        ["me", "instructions", "set", "--style", "Short answers."],
        ["me", "instructions", "show", "--json"],
        ["me", "instructions", "set", "--about", "x" * 1501],
        ["me", "prompts", "add", "price", "Price {{ item }} at {{ margin }}% margin", "-d", "Pricing"],
        ["me", "prompts", "add", "evil", "ok\n{{ lipsum.__globals__ }}"],
        ["me", "prompts", "share", "price"],
        ["me", "prompts", "list", "--json"],
        ["prompts", "promote-shared", "price", "--as", "bakery.price"],
        ["prompts", "promote-shared", "nothing"],
        ["prompts", "show", "bakery.price", "--json"],
        ["me", "prompts", "rm", "price"],
        ["me", "prompts", "rm", "price"],
        ["me", "instructions", "clear"],
        ["me", "instructions", "show"],
    ]
    (
        empty,
        set_both,
        set_style,
        shown,
        too_long,
        added,
        evil,
        shared,
        listed,
        promoted,
        unknown,
        registry,
        removed,
        removed_again,
        cleared,
        after,
    ) = run_session(env, commands, cwd=sqlite_server.home)
    assert "no custom instructions" in empty.ok()
    assert "saved" in set_both.ok()
    assert "saved" in set_style.ok()
    data = json.loads(shown.ok())
    assert (data["about"], data["style"]) == ("I run a bakery.", "Short answers.")  # --about kept
    assert "at most 1,500 characters; this has 1,501" in too_long.error_line()
    assert added.ok() == "saved /price (variables: item, margin)\n"
    assert "line 2, column 10" in evil.error_line()
    assert shared.ok() == "/price: shared with the project\n"
    (row,) = json.loads(listed.ok())
    assert (row["name"], row["who"], row["variables"]) == ("/price", "shared", "item, margin")
    assert promoted.ok().startswith("bakery.price: new version 1 (author mia)")
    assert "no prompt named /nothing is shared" in unknown.error_line()
    version = json.loads(registry.ok())
    assert version["author"] == "mia"
    assert removed.ok() == "deleted /price\n"
    assert "no saved prompt named /price" in removed_again.error_line()
    assert cleared.ok() == "custom instructions cleared\n"
    assert "no custom instructions" in after.ok()
