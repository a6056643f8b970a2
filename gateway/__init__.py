"""The Value Chain CRM API gateway: one authenticated entry point in front of the five services.

`create_app()` in gateway.main builds the app; `python -m gateway` runs it under uvicorn.
"""
