"""lifecycle's after-sales service: tickets, SLA policies, business calendars, cost to serve."""
