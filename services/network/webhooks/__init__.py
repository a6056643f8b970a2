"""network's webhooks: partner systems subscribe to public events and receive them signed
(Standard Webhooks), at least once, from a durable JetStream consumer per subscription."""
