"""Erasure (GDPR Art. 17): identify's side. `POST /v1/customers/{id}/erasure` erases identify's
own data, keeps the suppression entries and emits crm.identify.customer.erased; every service
reports back (crm.<service>.customer.erasure_applied, `handlers.py`); once all have, the
events about the customer still on the JetStream stream are deleted (`stream.py`), and
`GET /v1/erasures/{id}` reports it all (docs/privacy.md)."""
