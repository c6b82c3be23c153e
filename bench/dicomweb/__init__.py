"""DICOMweb benchmark: our DICOMweb service against Orthanc's DICOMweb plugin on
the same studies (see bench/dicomweb/README.md)."""
