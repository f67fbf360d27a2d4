"""Form fields several screens share: a number field that says its range and keeps what was
typed (a text input, so "abc" or "0" comes back as typed, with the accepted range)."""

from __future__ import annotations

from typing import Any

from wtforms import Field, StringField
from wtforms.validators import StopValidation

from .validation import parse_whole_number, whole_number_message


class Required:
    """Marks a field as mandatory (asterisk, required attribute); the service checks it."""

    field_flags = {"required": True}

    def __call__(self, form: Any, field: Field) -> None:
        return None


class WholeNumber:
    """Validator: a whole number from `minimum` to `maximum` (or empty when not required)."""

    def __init__(self, minimum: int, maximum: int, required: bool = True) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.required = required
        self.field_flags = {"required": True} if required else {}

    def __call__(self, form: Any, field: Field) -> None:
        try:
            value = parse_whole_number(field.data, self.minimum, self.maximum)
        except ValueError as e:
            raise StopValidation(str(e)) from None
        if value is None and self.required:
            raise StopValidation(whole_number_message(self.minimum, self.maximum))


def range_help(minimum: int, maximum: int, help_text: str | None = None) -> str:
    """The help text of a number field, ending with the range it accepts."""
    accepted = f"A whole number from {minimum} to {maximum}."
    return f"{help_text} {accepted}" if help_text else accepted


def whole_number_field(
    label: str, minimum: int, maximum: int, required: bool = True, help_text: str | None = None
) -> StringField:
    """A text field for a whole number in range; its help text and its error say the range."""
    return StringField(
        label,
        validators=[WholeNumber(minimum, maximum, required)],
        description=range_help(minimum, maximum, help_text),
        render_kw={"inputmode": "numeric", "autocomplete": "off"},
    )


def retype_message(what: str) -> str:
    """What a secret field says when its form comes back: it is never sent back."""
    return f"Enter the {what} again: it is never sent back to the browser."


def ask_again(field: Field, what: str) -> None:
    """A secret was typed and the form comes back (an error, a test): the field is empty
    now, so say so on it (unless it already has an error of its own)."""
    if field.data and not field.errors:
        field.errors = [*field.errors, retype_message(what)]
