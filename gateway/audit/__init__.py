"""The audit log: every write through the gateway, append-only, in one hash chain.

- `chain.py`: the canonical bytes of an entry and the chain hash over them;
- `models.py`: the tables (`audit_entries`, and `audit_resources` to find entries by id);
- `writer.py`: the front's after-response hook queues an entry; a batch writer appends
  queued entries to the chain, one transaction per batch, under the chain's lock;
- `repository.py`: the queries (append, list, walk);
- `endpoints.py`: `GET /v1/audit` and `GET /v1/audit/verify`.

docs/security.md ("Audit log") says what is recorded, what a crash can lose, and what an
operator can still do to the rows.
"""
