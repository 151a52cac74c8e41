"""Domain models (being written)."""
