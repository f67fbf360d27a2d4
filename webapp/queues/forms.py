"""The queue form (add and edit share it)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, SubmitField, TextAreaField

from ..account_types import VALIDITIES


class QueueForm(FlaskForm):
    name = StringField("Name *")
    validity = SelectField(
        "Validity *", choices={v: v for v in VALIDITIES}, default="valid", validate_choice=False
    )
    comment = TextAreaField("Comment", render_kw={"rows": 2})
    submit = SubmitField("Save")
