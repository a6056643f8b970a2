"""The service scaffolding: the app every service is built with, its runtime and its tuning."""
