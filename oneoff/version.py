"""The version, in a module of its own so any layer can read it without importing the API."""

VERSION = "0.1.0"
