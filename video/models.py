"""Models of the video app (filled in by its own issue)."""
