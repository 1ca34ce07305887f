"""Models of the records app (filled in by its own issue)."""
