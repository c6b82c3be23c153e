"""Who may see which study: the access checks every read of a study goes through.

Not a Django app (it owns no table): it sits above the apps whose facts it
combines -- network (who administers or staffs what) and worklist (what is on a
reader's worklist) -- and below every view and selector that reads studies.
"""
