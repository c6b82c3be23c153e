"""Second opinions and peer review of final reports: a second reader's look at a signed
report, requested by the facility or an admin, or drawn at random for peer review."""
