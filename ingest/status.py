"""C-STORE status codes the gateway answers with (PS3.4 Annex B.2.3)."""

SUCCESS = 0x0000
# Refused: out of resources -- the sender should retry later (disk full, database down).
OUT_OF_RESOURCES = 0xA700
# Error: data set does not match SOP class (e.g. the UID in the data differs).
DATASET_MISMATCH = 0xA900
# Error: cannot understand -- unparseable object or required UID missing.
CANNOT_UNDERSTAND = 0xC210
