"""Helpers shared by the test suite (real brokers, real processes)."""
