"""The benchmark (`make bench`, `python -m tests.performance`): measurements, not tests."""
