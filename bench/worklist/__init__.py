"""A busy reader's worklist over a big history: the page query at the database and
the API end to end (``python -m bench.worklist``; see README.md)."""
