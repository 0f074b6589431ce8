"""For annotation queue and traces-to-dataset tests: a project with chat traces, a principal per role."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from fmops.annotation import AnnotationService
from fmops.artifacts import ArtifactStore
from fmops.auth import Principal, Role
from fmops.datasets import DatasetService
from fmops.gateway.spans import new_span_id, new_trace_id
from fmops.platform import Platform
from fmops.store import utcnow
from fmops.store.models import Span


@dataclass
class World:
    platform: Platform
    service: AnnotationService
    datasets: DatasetService
    principals: dict[str, Principal] = field(default_factory=dict)

    def key(self, user: str, role: Role, project: str = "default") -> Principal:
        _, plaintext = self.platform.auth.create_key(
            name=f"{user}-{new_span_id()}", role=role, creator=None, project=project, user=user
        )
        return self.platform.auth.authenticate(plaintext)

    def trace(
        self,
        question: str,
        answer: Any,
        *,
        project_id: str | None = None,
        model: str = "small",
        ago: float = 0,
        **columns: Any,
    ) -> str:
        """A chat call as the gateway records it: messages in, an assistant message out."""
        trace_id = new_trace_id()
        output = {"role": "assistant", "content": answer} if isinstance(answer, str) else answer
        with self.platform.store.session() as session:
            session.add(
                Span(
                    span_id=new_span_id(),
                    trace_id=trace_id,
                    project_id=project_id or self.principals["engineer"].project_id,
                    name=f"chat {model}",
                    start_time=utcnow() - timedelta(seconds=ago),
                    model=model,
                    user="customer",
                    input={
                        "messages": [
                            {"role": "system", "content": "You are the shop's assistant."},
                            {"role": "user", "content": question},
                        ],
                        "temperature": 0.2,
                    },
                    output=output,
                    attributes={},
                    **columns,
                )
            )
        return trace_id


def make_world(platform: Platform) -> World:
    auth = platform.auth
    auth.bootstrap(platform.settings.home / "admin.key")
    with platform.store.session() as session:
        default = auth.project_by_name(session, "default").id
    for name, role in (("eve", Role.engineer), ("ann", Role.annotator), ("abe", Role.annotator)):
        auth.create_user(name, role=role, project_id=default)
    auth.create_user("cody", role=Role.consumer, project_id=default)
    other = auth.create_project("other").id
    auth.create_user("otto", role=Role.annotator, project_id=other)
    datasets = DatasetService(platform.store, ArtifactStore.from_settings(platform.settings))
    w = World(platform, AnnotationService(platform.store, platform.tracer, datasets), datasets)
    w.principals = {
        "engineer": w.key("eve", Role.engineer),
        "ann": w.key("ann", Role.annotator),
        "abe": w.key("abe", Role.annotator),
        "consumer": w.key("cody", Role.consumer),
        "outsider": w.key("otto", Role.annotator, project="other"),
    }
    return w
