"""HL7 benchmark: orders per second through the MLLP listener, next to a bare MLLP
echo server (see ``bench/hl7/__main__.py``)."""
