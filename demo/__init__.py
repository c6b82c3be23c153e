"""Demo data: the reading network, rules, users and studies ``make demo`` starts with.

Its own app so that the domain apps import nothing of it, and it may import any of
them.  It builds fixtures, as tests do (``tests/ownership.py`` does not charge it).
"""
