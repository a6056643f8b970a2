"""A purchase locks its customer's row by `id = $1`, a statement PostgreSQL plans once per
connection: the `= ANY(array)` form it replaced got a custom plan at every purchase."""

from __future__ import annotations

from sqlalchemy import text

from services.identify.transactions import repository
from tests.services.identify.test_batch import create_customer


async def test_one_customer_is_locked_with_a_plan_kept_across_purchases(suite):
    identify = await suite.start("identify")
    ada, bob = await create_customer(identify.client, "ada"), await create_customer(identify.client, "bob")
    db = identify.runtime.db
    async with db.writer() as session, session.begin():  # one connection throughout
        # Several: the array form, through the session. First: SQLAlchemy's asyncpg adapter
        # reloads the connection's schema state at its first statement after another
        # connection saw the schema change (the migrations), which drops the statements
        # asyncpg had prepared, the one-customer lock's among them (it runs on the driver).
        both = await repository.lock_customers(session, {ada, bob})
        assert both.keys() == {ada, bob}
        for _ in range(10):
            found = await repository.lock_customers(session, {ada})
            assert found == {ada: {"id": ada, "merged_into": None, "purchase_count": 0}}
        if db.writer_engine.dialect.name == "postgresql":
            plans = (
                await session.execute(
                    text(
                        "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                        " WHERE statement LIKE '%FOR UPDATE%' AND statement LIKE '%customers.id = $1%'"
                        " AND statement NOT LIKE '%pg_prepared_statements%'"
                    )
                )
            ).all()
            assert len(plans) == 1, plans
            generic, custom = plans[0]
            # PostgreSQL tries five custom plans, then keeps the generic one (the array form: ten custom)
            assert generic + custom == 10 and custom <= 5, plans
