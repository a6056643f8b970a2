"""Finding customers: filters, substring search, sorted keyset pages, and exports."""
