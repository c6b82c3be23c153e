"""Orders arrive: HL7 v2 over MLLP (ORM/OMI orders, ADT patient updates and merges),
kept raw with their outcome, and applied to orders, patients and studies."""
