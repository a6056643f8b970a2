"""Observability: JSON logs, metrics, and the request and correlation ids they carry."""
