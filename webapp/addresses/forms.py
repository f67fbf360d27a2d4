"""The email address form (add and edit share it; the view fills the queue choices)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, SubmitField, TextAreaField

from ..account_types import VALIDITIES


class AddressForm(FlaskForm):
    address = StringField("Email address *", render_kw={"type": "email"})
    display_name = StringField("Display name")
    queue_id = SelectField("Queue *", choices=[], validate_choice=False)
    validity = SelectField(
        "Validity *", choices={v: v for v in VALIDITIES}, default="valid", validate_choice=False
    )
    comment = TextAreaField("Comment", render_kw={"rows": 2})
    submit = SubmitField("Save")
