"""The stage rules as the API configures them: every change is a new version, and re-evaluates
every customer at once (a sweep). A rule set the schema let through is checked once more for
what only the whole can say (rules.problems): 422 naming the field, nothing written."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError

from services.lifecycle.stages import repository, sweeps
from services.lifecycle.stages.rules import problems
from shared.db.database import Database, utcnow
from shared.db.uow import transaction
from shared.http.errors import Conflict, InvalidRequest
from shared.settings import LifecycleSettings


def _out(version: int, rules: list[dict[str, Any]], created_at: Any) -> dict[str, Any]:
    return {"version": version, "rules": rules, "created_at": created_at}


async def rule_set(*, session: Any) -> dict[str, Any]:
    version, rules, created_at = await sweeps.current_rules(session)
    return _out(version, rules, created_at)


async def versions(*, session: Any, before: int | None, limit: int) -> list[dict[str, Any]]:
    """Every version, newest first; the built-in defaults (version 1) last."""

    rows = [
        _out(r["version"], r["rules"], r["created_at"])
        for r in await repository.rule_sets(session, before=before, limit=limit)
    ]
    if len(rows) < limit and (before is None or before > sweeps.DEFAULT_VERSION):
        rows.append(_out(sweeps.DEFAULT_VERSION, sweeps.DEFAULT_RULES, None))
    return rows


async def replace(*, db: Database, settings: LifecycleSettings, rules: list[dict[str, Any]]) -> dict[str, Any]:
    """A new version of the rule set, then a sweep under it (None when another sweep runs)."""

    found = problems(rules)
    if found:
        raise InvalidRequest([{"field": field, "message": message, "type": "value_error"} for field, message in found])
    try:
        async with transaction(db.writer) as session:
            version, _, _ = await sweeps.current_rules(session)
            row: dict[str, Any] = {"version": version + 1, "rules": rules, "created_at": utcnow()}
            await repository.insert_rule_set(session, row)
    except IntegrityError as exc:  # two changes at once: the other took this version
        raise Conflict("the rules changed meanwhile: read them again", error="rules_changed") from exc
    try:
        sweep = await sweeps.run(db, settings, trigger="rules")
    except sweeps.SweepRunning:
        sweep = None
    return {**_out(row["version"], rules, row["created_at"]), "sweep": sweep}
