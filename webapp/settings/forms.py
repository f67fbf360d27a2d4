"""The Settings form, built from the SETTINGS table so a new setting is one entry there."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import SelectField, StringField, SubmitField
from wtforms.validators import DataRequired

from ..extensions import db
from ..formfields import Required, whole_number_field
from ..models import Queue
from .store import SETTINGS


def settings_form(data: dict[str, str]) -> FlaskForm:
    """A form with one field per setting, filled with `data`."""

    class SettingsForm(FlaskForm):
        submit = SubmitField("Save")

    queues = {q.name: q.name for q in db.session.query(Queue).order_by(Queue.name)}
    for spec in SETTINGS.values():
        field: SelectField | StringField
        if spec.kind == "int":
            field = whole_number_field(spec.label, spec.minimum, spec.maximum, help_text=spec.help)
        elif spec.kind == "queue":
            field = SelectField(
                spec.label, choices=queues, description=spec.help, validators=[Required()]
            )
        else:
            field = StringField(spec.label, validators=[DataRequired()], description=spec.help)
        setattr(SettingsForm, spec.key, field)
    return SettingsForm(data=data)
