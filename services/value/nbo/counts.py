"""Moving the response counts as offers are issued and redeemed (one upsert per segment)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.value.nbo.models import UNSCORED, ResponseCount
from shared.db.database import dialect_insert, dialect_name

_TABLE = ResponseCount.__table__


async def _add(session: AsyncSession, template_id: str, segment: str | None, *, issued: int, redeemed: int) -> None:
    statement = dialect_insert(_TABLE, dialect_name(session)).values(
        template_id=template_id, segment=segment or UNSCORED, issued=issued, redeemed=redeemed
    )
    statement = statement.on_conflict_do_update(
        index_elements=["template_id", "segment"],
        set_={
            "issued": _TABLE.c.issued + statement.excluded.issued,
            "redeemed": _TABLE.c.redeemed + statement.excluded.redeemed,
        },
    )
    await session.execute(statement)


async def count_issued(session: AsyncSession, template_id: str, segments: Iterable[str | None]) -> None:
    """Offers of the template issued to customers of these segments (one per offer)."""

    for segment, n in Counter(segments).items():
        await _add(session, template_id, segment, issued=n, redeemed=0)


async def count_redeemed(session: AsyncSession, template_id: str | None, segment: str | None) -> None:
    if template_id is not None:
        await _add(session, template_id, segment, issued=0, redeemed=1)


async def of_segment(session: AsyncSession, segment: str | None) -> dict[str, tuple[int, int]]:
    """{template_id: (issued, redeemed)} in the segment."""

    query = select(ResponseCount.template_id, ResponseCount.issued, ResponseCount.redeemed).where(
        ResponseCount.segment == (segment or UNSCORED)
    )
    return {template_id: (issued, redeemed) for template_id, issued, redeemed in (await session.execute(query)).all()}


async def of_all_segments(session: AsyncSession) -> dict[str, tuple[int, int]]:
    """{template_id: (issued, redeemed)} over every segment: the prior's data."""

    query = select(
        ResponseCount.template_id, func.sum(ResponseCount.issued), func.sum(ResponseCount.redeemed)
    ).group_by(ResponseCount.template_id)
    rows = (await session.execute(query)).all()
    return {template_id: (int(issued), int(redeemed)) for template_id, issued, redeemed in rows}
