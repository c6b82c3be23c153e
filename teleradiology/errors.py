"""The project's own error types, raised by services and mapped to HTTP by the API."""


class DomainError(Exception):
    """A request the domain refuses; the message is safe to show the user."""

    status_code = 400

    def __init__(self, message: str, *, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class InvalidTransition(DomainError):
    """A state change the state machine does not allow from the current state."""

    status_code = 409


class Conflict(DomainError):
    """Someone else changed the object first (a lost race)."""

    status_code = 409


class NotPermitted(DomainError):
    """The actor may not do this to an object they can otherwise see."""

    status_code = 403
