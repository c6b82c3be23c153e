"""C-STORE status codes the gateway answers with (PS3.4 Annex B.2.3).

Each is listed, with when it is answered, in docs/dicom-conformance.md.  Only
0xA7xx tells a sender to try again later; every 0xA9xx and 0xCxxx is final for
that object (it is kept in quarantine with the reason).
"""

SUCCESS = 0x0000
# Refused: out of resources -- the sender should retry later (database or storage
# unavailable).  Never answered for anything about the object itself.
OUT_OF_RESOURCES = 0xA700
# Refused: the facility's storage quota is used up (retry once an admin raises it).
QUOTA_EXCEEDED = 0xA710
# Error: data set does not match SOP class -- the C-STORE request's SOP Class or
# Instance UID is not the data set's.
DATASET_MISMATCH = 0xA900
# Error: cannot understand -- the data set does not parse to its end under its
# transfer syntax (truncated, bad lengths, undelimited sequences...).
CANNOT_UNDERSTAND = 0xC210
# Error: cannot understand -- an element's value is refused (UID syntax, a
# multi-valued identifying UID, an integer out of range, text not in the declared
# character set, a missing identifying UID).
INVALID_VALUE = 0xC220
# Error: cannot understand -- the pixel data does not match its description or its
# transfer syntax (wrong length, empty, native labelled compressed, bad fragments).
PIXEL_DATA_INVALID = 0xC230
# Error: cannot understand -- the SOP Instance UID is already stored for another
# facility, study or series.
INSTANCE_CONFLICT = 0xC240
# Error: cannot understand -- larger than the facility's maximum object size, or a
# private element beyond the private element limit.
TOO_LARGE = 0xC250
# Error: cannot understand -- the C-STORE request itself is invalid (its Affected
# SOP Instance or Class UID is empty, blank or too long).
REQUEST_INVALID = 0xC260

# Not a status anyone was answered: recorded on the quarantine row of a stored file
# that the orphan sweep found no row naming.
NOT_ANSWERED = 0xFFFF
