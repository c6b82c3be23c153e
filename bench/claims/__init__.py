"""Claiming under contention: HTTP clients through the real API against the bare
``SELECT ... FOR UPDATE SKIP LOCKED`` loop, doubles counted from the clients' logs
(``python -m bench.claims``; see README.md)."""
