"""The use cases, shared by the CLI and the API."""
