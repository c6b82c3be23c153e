"""Why an HL7 message is not applied: the acknowledgement code and the field."""

from __future__ import annotations


class MessageRejected(Exception):
    """A message that is not applied, answered with ``code``: "AE" (understood but
    wrong: an unknown accession for a cancel, a required field missing) or "AR"
    (cannot be accepted: unknown sending facility, unparseable, unsupported).
    ``field`` names the offending field (e.g. "ORC-1", "PID-3") for the ERR
    segment; ``text`` is the reason in words, kept with the stored message."""

    def __init__(self, text: str, *, code: str = "AE", field: str = "") -> None:
        if code not in ("AE", "AR"):
            raise ValueError(f"acknowledgement code must be AE or AR, not {code!r}")
        super().__init__(text)
        self.text = text
        self.code = code
        self.field = field
