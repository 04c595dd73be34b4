"""dmchain ledger package."""
