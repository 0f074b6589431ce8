"""Evaluator rules of a project: which scorer judges which live traces, at what sample rate.

A rule's config is checked against its scorer when it is created or changed (a bad field is a 400
naming it), and every model a scorer calls (the judge's) must exist in the project's catalog. A rule
of another project answers 404: it is invisible, not forbidden.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from fmops.catalog import Catalog
from fmops.errors import Conflict, NotFound, UserError
from fmops.evaluators.schemas import RuleCreate, RuleUpdate
from fmops.scorers import build
from fmops.store import Store
from fmops.store.models import EvaluatorRule


class EvaluatorService:
    def __init__(self, store: Store, catalog: Catalog) -> None:
        self.store = store
        self.catalog = catalog

    def rules(self, project_id: str) -> list[EvaluatorRule]:
        with self.store.session() as session:
            return list(
                session.scalars(
                    select(EvaluatorRule)
                    .where(EvaluatorRule.project_id == project_id)
                    .order_by(EvaluatorRule.name)
                )
            )

    def get(self, project_id: str, rule_id: str) -> EvaluatorRule:
        with self.store.session() as session:
            rule = session.get(EvaluatorRule, rule_id)
        if rule is None or rule.project_id != project_id:
            raise NotFound(f"no evaluator with id {rule_id!r} in this project")
        return rule

    def by_name(self, project_id: str, name: str) -> EvaluatorRule:
        with self.store.session() as session:
            rule = session.scalars(
                select(EvaluatorRule).where(
                    EvaluatorRule.project_id == project_id, EvaluatorRule.name == name
                )
            ).first()
        if rule is None:
            raise NotFound(f"no evaluator named {name!r} in this project")
        return rule

    def create(self, project_id: str, body: RuleCreate, *, created_by_key_id: str | None) -> EvaluatorRule:
        config = self._checked(project_id, body.scorer, body.config)
        with self.store.write() as session:
            self._name_free(session, project_id, body.name)
            rule = EvaluatorRule(
                project_id=project_id,
                name=body.name,
                scorer=body.scorer,
                config=config,
                model=body.model,
                endpoint=body.endpoint,
                sample_rate=body.sample_rate,
                enabled=body.enabled,
                created_by_key_id=created_by_key_id,
            )
            session.add(rule)
        return rule

    def update(self, project_id: str, rule_id: str, body: RuleUpdate) -> EvaluatorRule:
        changes = body.changes()
        with self.store.write() as session:
            rule = session.get(EvaluatorRule, rule_id)
            if rule is None or rule.project_id != project_id:
                raise NotFound(f"no evaluator with id {rule_id!r} in this project")
            if "scorer" in changes or "config" in changes:
                scorer = changes.get("scorer", rule.scorer)
                changes["config"] = self._checked(project_id, scorer, changes.get("config", rule.config))
            if changes.get("name", rule.name) != rule.name:
                self._name_free(session, project_id, changes["name"])
            for name, value in changes.items():
                setattr(rule, name, value)
        return rule

    def delete(self, project_id: str, rule_id: str) -> EvaluatorRule:
        with self.store.write() as session:
            rule = session.get(EvaluatorRule, rule_id)
            if rule is None or rule.project_id != project_id:
                raise NotFound(f"no evaluator with id {rule_id!r} in this project")
            session.delete(rule)
        return rule

    def enabled_rules(self) -> list[EvaluatorRule]:
        """Every project's enabled rules, for the online runner."""
        with self.store.session() as session:
            return list(session.scalars(select(EvaluatorRule).where(EvaluatorRule.enabled.is_(True))))

    def _checked(self, project_id: str, scorer: str, config: dict[str, Any]) -> dict[str, Any]:
        """The config as stored (validated, defaults filled in); UserError naming what to fix."""
        built = build(scorer, config)
        if built.needs_expected:
            raise UserError(
                f"scorer {scorer!r} compares the output with an expected one, which live traces do "
                "not have; use it in an eval suite, or pick a scorer that judges the output alone",
                param="scorer",
            )
        for alias in built.models_used():
            try:
                self.catalog.get(project_id, alias)
            except NotFound as exc:
                raise UserError(f"config.model: {exc.message}", param="config.model") from None
        stored: dict[str, Any] = built.config.model_dump(mode="json", by_alias=True)
        return stored

    @staticmethod
    def _name_free(session: Any, project_id: str, name: str) -> None:
        taken = session.scalars(
            select(EvaluatorRule.id).where(EvaluatorRule.project_id == project_id, EvaluatorRule.name == name)
        ).first()
        if taken is not None:
            raise Conflict(f"an evaluator named {name!r} already exists in this project", param="name")
