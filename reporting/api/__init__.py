"""The reporting API, one module per capability (as ``reporting.services``; the URLs
import the views from the modules, not from this package):

- ``templates``: structured report templates: list, add, new versions, export, import.
- ``reports``: a study's report and its draft, signing, addenda and versions.
- ``critical``: critical communications of a report (an action of the report views).
- ``delivery``: a report's result messages (HL7 v2, FHIR) and its PDF.
- ``macros``: a radiologist's own macros.
- ``_common`` (private): the calling reader, the visible report and the audited read.

Reads go through reporting.selectors (404 outside one's reach); writes go through
reporting.services, which check the claim and audit.
"""
