"""dmchain bench package."""
