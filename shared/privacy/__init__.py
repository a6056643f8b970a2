"""Personal data: which fields hold it, what a customer's export shows, what an erasure removes.

One mark, read everywhere (docs/privacy.md):

* `classification`: `personal(kind)` in a column's `info`, `Personal(kind)` in a payload
  field's metadata, and `about_customers(...)` in a table's `info` naming the column that
  ties its rows to a customer. Export and erasure read only these marks, so a new field
  marked personal is exported and erased with no further code.
* `scrub`: an event (CloudEvent JSON, or a typed one) with its personal fields nulled
  when it is about an erased customer.
* `erasure`: a service's share of an erasure (its tables, outbox and dead letters, SQLite's
  leftover bytes) and the `<service>-erasures` consumer that does it.
* `export`: what a service holds about a customer, per table, with why.
* `suppression`: the keyed hash that keeps an erased person from being marketed to again.

This package imports nothing from `shared.events` at the top (contracts.py reads the marks).
"""
