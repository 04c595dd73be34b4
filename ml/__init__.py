"""dmchain ml package."""
