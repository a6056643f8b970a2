"""The database: engines and sessions, transactions, bulk writes, migrations, ids."""
