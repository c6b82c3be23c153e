"""Routing: deciding who may and should read a study, and escalating it.

The decision engine (rules, tiers, eligibility, escalation sweep) is issue 4;
until it lands this app holds no models.
"""
