"""Money: the portfolio's reporting currency and its dated exchange rates, and the refunds
and voids that correct recorded purchases."""
