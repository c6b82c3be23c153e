"""Writes to reports and templates, one module per capability (import from the
module, not from this package):

- ``templates``: report templates: cleaning a template document, creating, versioning,
  importing, and seeding the starter library.
- ``reports``: a study's report: drafts (autosave), signing preliminary or final, the
  final-read hand-over of a preliminary-only read, and addenda.
- ``critical``: critical results: recording who was told, and alerting when nobody
  was told in time.
- ``macros``: a radiologist's own text snippets.
- ``delivery``: facilities' result endpoints and the delivery of result messages
  (HL7 v2 over MLLP, FHIR over HTTPS) with every attempt recorded.
- ``_messages`` (private): building and storing the result messages of a final or an
  addendum inside the signing transaction, shared by ``reports`` and ``delivery``.
"""
