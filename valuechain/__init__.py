"""Value Chain CRM command line: `valuechain run` starts the whole suite locally
(NATS JetStream, the five stage services and the API gateway) under one supervisor;
`valuechain migrate` brings every service's database schema up to date.
"""

__version__ = "0.1.0"
