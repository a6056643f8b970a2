"""Money: the portfolio's reporting currency, its dated exchange rates, and amounts as
the API reads and writes them (refunds and voids correct purchases in transactions/)."""
