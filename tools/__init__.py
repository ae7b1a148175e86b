"""Operator and developer tools: they depend on the services, never the reverse."""
