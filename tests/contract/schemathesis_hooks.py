"""Schemathesis hooks for tests/contract/test_fuzz.py (loaded through SCHEMATHESIS_HOOKS).

A positive test case says "the schema allows this, so the API must accept it". Two
kinds of input can follow the schema and still not be accepted, and no schema can
say otherwise; for positive cases only, these hooks make them real:

* ids of other resources in a body (`customer_id`, `referred_by`): a generated id
  names no customer, and the service answers 422 naming the field. The fuzz test
  creates one customer first and passes its id in VALUECHAIN_FUZZ_CUSTOMER_ID.
* ids of employees (`assignee_id`, `author_id`): the scratch suite has no employee
  stakeholder, so positive cases send null (unassigned, no author), which the schema allows.
* `cursor`: opaque, only this API issues one; a generated cursor is refused with
  422 naming `query.cursor`. It is left out (negative cases still send bad cursors).
"""

from __future__ import annotations

import os

import schemathesis
from schemathesis.generation import GenerationMode

CUSTOMER_ID = os.environ.get("VALUECHAIN_FUZZ_CUSTOMER_ID", "")
CUSTOMER_REFERENCES = ("customer_id", "referred_by")
EMPLOYEE_REFERENCES = ("assignee_id", "author_id")


@schemathesis.hook
def map_case(context, case):
    meta = case.meta
    if meta is None or meta.generation.mode != GenerationMode.POSITIVE:
        return case
    if isinstance(case.query, dict):
        case.query.pop("cursor", None)
    if CUSTOMER_ID and isinstance(case.body, dict):
        for name in CUSTOMER_REFERENCES:
            if isinstance(case.body.get(name), str):
                case.body[name] = CUSTOMER_ID
    if isinstance(case.body, dict):
        for name in EMPLOYEE_REFERENCES:
            if isinstance(case.body.get(name), str):
                case.body[name] = None
    return case
