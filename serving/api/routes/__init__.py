"""Route modules, one per area (health, ingest, posts)."""
