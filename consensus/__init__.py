"""dmchain consensus package."""
