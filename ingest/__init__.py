"""DICOM ingest: the C-STORE gateway, object storage, quarantine, study completeness."""
