"""Customers: who they are (identities, match keys, the search index rows) and the one
rule for a merged customer, which every other identify sub-domain uses."""
