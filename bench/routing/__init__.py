"""Routing: decisions/s through the task path against a raw-SQL reference, ready ->
offered under load, the escalation sweep over a big table and a kill -9 fault test
(``python -m bench.routing``; see README.md)."""
