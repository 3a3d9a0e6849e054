"""Locust load tests of the fenced HTTP API; run them with ``python -m loadtests.run``."""
