"""The suite's common library: event backbone, database plumbing, service scaffolding.

Nothing in here imports a service or the gateway (a test holds that).
"""
