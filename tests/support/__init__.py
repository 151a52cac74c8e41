"""Helpers the tests run as separate processes (``python -m tests.support.<name>``)."""
