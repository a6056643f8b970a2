"""HTTP: errors and their rendering, request middleware, health, pagination, query and field checks, OpenAPI."""
