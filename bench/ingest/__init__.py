"""DICOM ingest: our listener against dcmtk's storescp and Orthanc
(``python -m bench.ingest``), and the gateway against many mutated objects
(``python -m bench.ingest.fuzz``); see bench/README.md."""
