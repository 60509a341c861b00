"""The inventory: find, load, validate, cache, and resolve per-host settings."""
