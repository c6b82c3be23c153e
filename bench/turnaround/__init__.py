"""Facility turnaround and the operations queries over a year of studies, at the
database and through the API (``python -m bench.turnaround``; see bench/README.md)."""
