"""Relevant priors from Orthanc as the facility's PACS: ready -> priors retrieved."""
