"""Transactions: purchases recorded one by one, in batches and from imports, and the
refunds and voids that correct them."""
