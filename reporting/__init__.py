"""Reporting: structured reports, critical results and delivery (issue 6)."""
