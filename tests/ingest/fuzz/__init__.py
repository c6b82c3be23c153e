"""A seeded DICOM mutation fuzzer for the gateway, judged by an independent oracle.

``oracle`` checks a data set's structure from PS3.5 by reading its bytes;
``mutate`` makes deterministic broken (and some intact) objects; ``sender``
sends them byte for byte over a real association; ``campaign`` runs a batch and
lists what the gateway got wrong.  None of them imports the gateway's own code
(``ingest.synthetic`` only makes the well-formed objects that are then broken).
"""
