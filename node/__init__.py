"""dmchain node package."""
