"""dmchain pre package."""
