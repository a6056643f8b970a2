"""Import jobs' HTTP API (thin: translate HTTP into service calls)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile, status

from services.identify.imports import service
from services.identify.imports.schemas import ImportDetail, ImportErrorPage, ImportPage, ImportStarted
from shared.http.deps import ReadSession
from shared.http.pagination import INTEGER, PageParams, PagingById, page_params

router = APIRouter(prefix="/v1", tags=["imports"])

OptionalText = Annotated[str | None, Form()]
RejectionsPaging = Annotated[PageParams[tuple[int]], Depends(page_params(INTEGER))]  # by line number


@router.post("/imports", status_code=status.HTTP_202_ACCEPTED, response_model=ImportStarted)
async def start_import(
    request: Request,
    file: Annotated[UploadFile, File(description="CSV or NDJSON; one row per line")],
    mapping: Annotated[
        str | None, Form(description='JSON object: the file\'s column → ours, e.g. {"id": "customer_external_id"}')
    ] = None,
    create_customers: Annotated[bool, Form(description="create customers for unknown external ids")] = False,
    format: Annotated[str | None, Form(description="csv or ndjson; guessed from the name or content")] = None,
    delimiter: Annotated[str | None, Form(description="CSV: one character, `tab` or `whitespace`; guessed")] = None,
    columns: Annotated[
        str | None, Form(description="comma-separated column names of a file with no header row")
    ] = None,
    date_format: Annotated[str | None, Form(description="strptime format of occurred_at, e.g. %d/%m/%Y")] = None,
    currency: Annotated[str | None, Form(description="currency of rows without one")] = None,
):
    """Start importing a file of transactions; poll GET /v1/imports/{id} for progress."""
    path, head = await service.spool(file)
    try:
        options = service.options_from_form(
            filename=file.filename,
            head=head,
            mapping=mapping,
            file_format=format,
            delimiter=delimiter,
            columns=columns,
            date_format=date_format,
            currency=currency,
        )
    except Exception:
        path.unlink(missing_ok=True)
        raise
    return await service.start_import(
        runtime=request.app.state.runtime,
        path=path,
        filename=file.filename,
        options=options,
        create_customers=create_customers,
    )


@router.get("/imports", response_model=ImportPage)
async def list_imports(session: ReadSession, page: PagingById):
    """Import jobs, newest first."""
    rows = await service.list_imports(session=session, before_id=page.after_value, limit=page.fetch)
    return page.of(rows, lambda job: (job["id"],))


@router.get("/imports/{import_id}", response_model=ImportDetail)
async def get_import(import_id: str, session: ReadSession):
    """A job's progress and its first rejected lines (all of them: /errors)."""
    return await service.get_import(session=session, job_id=import_id)


@router.get("/imports/{import_id}/errors", response_model=ImportErrorPage)
async def list_import_errors(import_id: str, session: ReadSession, page: RejectionsPaging):
    """Every rejected line with its reason, in line order."""
    rows = await service.list_rejections(
        session=session, job_id=import_id, after_line=page.after_value, limit=page.fetch
    )
    return page.of(rows, lambda row: (row["line"],))
