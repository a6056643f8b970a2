"""identify's portfolio analysis: purchase summaries, scores, the fitted model, refits and
the portfolio views.

The maths lives in services/identify/analysis (pure numpy); this package feeds it
from the database and keeps each customer's scores current.
"""
