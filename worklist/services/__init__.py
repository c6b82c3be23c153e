"""Worklist's writes, in two modules:

- ``offers``: opening, withdrawing, holding and restoring offers -- the only code
  that writes ``worklist_offer``.  Routing calls it to put a study on worklists.
- ``claims``: claiming, "next case", releasing, reassigning, declining and the
  stale-claim sweep.  Claims sit above routing: they ask routing's eligibility
  policy and move routing's timer through routing's services.
"""
