"""The services' catch-all: an exception of ours is a logged JSON 500, never plain text."""

from __future__ import annotations

import logging
from dataclasses import replace

from fastapi import APIRouter

from tests.shared import probe

router = APIRouter()


@router.get("/v1/broken")
async def broken():
    raise RuntimeError("a bug")


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_an_unexpected_error_is_a_logged_json_500_naming_the_request(suite):
    service = await suite.start_definition(replace(probe.DEFINITION, routers=[router]))
    records = Records()
    logging.getLogger("valuechain.app").addHandler(records)
    try:
        response = await service.client.get("/v1/broken", headers={"x-request-id": "req-1"})
    finally:
        logging.getLogger("valuechain.app").removeHandler(records)
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "error": "internal_error",
        "detail": "an unexpected error; it was logged with request id req-1",
    }
    assert response.headers["x-request-id"] == "req-1"
    documented = service.app.openapi()["paths"]["/v1/broken"]["get"]["responses"]["500"]  # as the document says
    assert documented["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    logged = [record for record in records.records if record.getMessage() == "unhandled error"]
    assert len(logged) == 1 and "a bug" in str(logged[0].exc_info[1])
    assert (await service.client.get("/healthz")).status_code == 200
