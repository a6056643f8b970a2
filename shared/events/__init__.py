"""Events: the envelope, the contracts, the outbox and its relay, the bus, the consumers."""
