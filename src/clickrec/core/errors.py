"""One exception hierarchy for the engine; the API maps it to HTTP in one place."""

from __future__ import annotations

from dataclasses import dataclass


class ClickrecError(Exception):
    """Base of every error the engine raises on purpose."""


@dataclass(frozen=True)
class FieldError:
    """One problem in one field of one record of a batch."""

    index: int | None
    field: str
    message: str

    def as_dict(self) -> dict[str, object]:
        return {"index": self.index, "field": self.field, "message": self.message}


class InvalidInput(ClickrecError):
    """The client sent something the engine refuses; nothing was written."""

    def __init__(self, errors: list[FieldError] | str) -> None:
        if isinstance(errors, str):
            errors = [FieldError(None, "", errors)]
        self.errors = errors
        super().__init__(
            "; ".join(f"{e.field}: {e.message}" if e.field else e.message for e in errors)
        )


class Unparsable(InvalidInput):
    """The input is not in the language it must be written in (a filter expression): 400,
    with where it went wrong."""


class NotFound(ClickrecError):
    """A named thing (item, user, run, model) does not exist."""


class Conflict(ClickrecError):
    """The request clashes with the current state."""


class Gone(ClickrecError):
    """A named thing existed but is kept no longer (a batch output past its retention)."""


class NotEnoughData(ClickrecError):
    """Training cannot start: the data is below the readiness threshold."""


class Unauthorized(ClickrecError):
    """No valid key was presented."""


class Forbidden(ClickrecError):
    """The key is valid but lacks the scope for this call."""


class StoreUnavailable(ClickrecError):
    """A backing store could not be reached."""
