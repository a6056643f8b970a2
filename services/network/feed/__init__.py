"""The event feed: `GET /v1/events`, the public CloudEvents read straight from the stream."""
