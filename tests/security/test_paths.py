"""Issue 7, item 7: paths and files from the API stay inside the model store; nothing is unpickled.

What takes a path or a file over the API today: model registration for the local engines (the
`model` field and path options such as transformers' `adapter` and `gguf_file`) and prompt specs
pushed as YAML. Each gets traversal (`../`, `..\\`, `%2e%2e`), absolute paths, `~`, symlinks out
of $FMOPS_HOME/models, files relative to the server's working directory, names too long for the
file system and NUL bytes -> 400 naming the field. Files that pose as models (a pickle named
.gguf, a truncated GGUF) are refused at load without being deserialized, and the server keeps
serving; YAML that asks for Python objects or expands aliases is refused. (The transformers and
embedding engines' own refusal of pickled weights and adapters is tested in tests/providers/.)
"""

from __future__ import annotations

import os
import pickle
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.security import Tenant, error_of
from support.server import RunningServer

pytestmark = pytest.mark.parametrize("secured", ["sqlite"], indirect=True)  # the file system's rules


class _MakesAFolder:
    """Unpickling this creates a folder: proof that a loader executed a pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


def _spec(model: str, provider: str = "llamacpp", **extra: Any) -> dict[str, Any]:
    return {"alias": f"p-{uuid.uuid4().hex[:8]}", "provider": provider, "model": model, **extra}


def _models_root(server: RunningServer) -> Path:
    root = server.home / "models"
    root.mkdir(exist_ok=True)
    return root


def test_paths_outside_the_model_store_are_refused(
    secured: RunningServer, tenant_a: Tenant, tmp_path: Path
) -> None:
    root = _models_root(secured)
    outside = tmp_path / "outside.gguf"
    outside.write_bytes(b"GGUF")
    (root / f"link-{tmp_path.name}.gguf").symlink_to(outside)
    (root / f"dir-{tmp_path.name}").symlink_to(tmp_path, target_is_directory=True)
    bad_paths = [
        "../outside.gguf",
        "../../../../etc/passwd",
        "sub/../../outside.gguf",
        "..\\..\\outside.gguf",
        "%2e%2e/%2e%2e/etc/passwd",
        "%2E%2E%2Fetc%2Fpasswd",
        "/etc/passwd",
        str(outside),
        "~",
        "~/model.gguf",
        "~root/.ssh/id_rsa",
        f"link-{tmp_path.name}.gguf",  # a symlink out of the store
        f"dir-{tmp_path.name}/outside.gguf",
        str(root / f"link-{tmp_path.name}.gguf"),
        "pyproject.toml",  # exists relative to the server's working directory
        "x" * 300,  # too long a name for the file system
        "model\x00.gguf",
    ]
    refusals: list[tuple[dict[str, Any], str]] = [(_spec(p), "model") for p in bad_paths]
    refusals += [(_spec(p, "transformers"), "model") for p in ("~", "../../etc", "/etc")]
    refusals += [
        (_spec("org/name", "transformers", options={"adapter": "/etc"}), "options.adapter"),
        (_spec("org/name", "transformers", options={"adapter": "../../x"}), "options.adapter"),
        (_spec("org/name", "transformers", options={"gguf_file": "../../x.gguf"}), "options.gguf_file"),
        (_spec("org/name", "transformers", options={"gguf_file": str(outside)}), "options.gguf_file"),
        (_spec("org/name", "transformers", options={"adapter": True}), "options.adapter"),
    ]
    with tenant_a.client(secured, "engineer") as engineer:
        for spec, field in refusals:
            error = error_of(engineer.post("/api/models", json=spec), 400)
            assert error["param"] == field, (spec, error)
        listed = {m["alias"] for m in engineer.get("/api/models").json()}
        assert not {spec["alias"] for spec, _ in refusals} & listed, "nothing was added"


def test_a_file_in_the_store_is_stored_by_its_absolute_path(secured: RunningServer, tenant_a: Tenant) -> None:
    root = _models_root(secured)
    (root / "sub").mkdir(exist_ok=True)
    (root / "sub" / "m.gguf").write_bytes(b"GGUF")
    with tenant_a.client(secured, "engineer") as engineer:
        relative = engineer.post("/api/models", json=_spec("sub/m.gguf"))
        assert relative.status_code == 201, relative.text
        # Anchored: the engine loads the file that was checked, whatever its working directory.
        assert relative.json()["model"] == str((root / "sub" / "m.gguf").resolve())
        absolute = engineer.post("/api/models", json=_spec(str(root / "sub" / "m.gguf")))
        assert absolute.status_code == 201, absolute.text
        hub = engineer.post("/api/models", json=_spec("HuggingFaceTB/SmolLM2-135M", "transformers"))
        assert hub.json()["model"] == "HuggingFaceTB/SmolLM2-135M", "a hub id is no path"


def _chat(client: httpx.Client, model: str) -> httpx.Response:
    return client.post(
        "/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": "hi"}]}
    )


def test_files_posing_as_models_are_never_deserialized(
    secured: RunningServer, tenant_a: Tenant, tmp_path: Path
) -> None:
    root = _models_root(secured)
    marker = tmp_path / "the-pickle-ran"
    (root / "pickled.gguf").write_bytes(pickle.dumps(_MakesAFolder(marker)))
    (root / "truncated.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 64)
    (root / "empty.gguf").write_bytes(b"")
    with tenant_a.client(secured, "engineer") as engineer:
        for name in ("pickled.gguf", "truncated.gguf", "empty.gguf"):
            spec = {**_spec(name), "alias": f"posing-{name.split('.')[0]}"}
            assert engineer.post("/api/models", json=spec).status_code == 201
            answer = _chat(engineer, spec["alias"])
            assert answer.status_code in (400, 502, 503), (name, answer.status_code, answer.text)
            assert "could not load" in answer.json()["error"]["message"], answer.text
    assert not marker.exists(), "a pickle posing as a model was executed"
    with secured.client() as admin:
        assert admin.get("/api/me").status_code == 200, "the server kept serving"


def test_yaml_specs_cannot_build_objects_or_expand_aliases(
    secured: RunningServer, tenant_a: Tenant, tmp_path: Path
) -> None:
    marker = tmp_path / "the-yaml-ran"
    python_object = f"""
name: evil
messages:
  - role: user
    content: !!python/object/apply:os.mkdir ["{marker}"]
"""
    laughs = "a: &a ['lol','lol','lol','lol','lol','lol','lol','lol','lol']\n"
    for level in "bcdefghij":
        previous = chr(ord(level) - 1)
        laughs += f"{level}: &{level} [*{previous},*{previous},*{previous},*{previous},*{previous}]\n"
    laughs += "name: laughs\nmessages: [{role: user, content: hi}]\n"
    with tenant_a.client(secured, "engineer") as engineer:
        for body in (python_object, laughs, "name: [unclosed\n", "\x00\x01\x02"):
            response = engineer.post(
                "/api/prompts", content=body.encode(), headers={"Content-Type": "application/yaml"}
            )
            assert response.status_code == 400, (body[:40], response.status_code, response.text)
    assert not marker.exists(), "YAML built a Python object"
