"""The PostMaster filter form: 12 match rows, 12 set rows (like OTOBO), and the Test box."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import (
    BooleanField,
    FieldList,
    Form,
    FormField,
    SelectField,
    StringField,
    SubmitField,
    TextAreaField,
)

from ..account_types import VALIDITIES
from ..formfields import whole_number_field
from ..postmaster.filters import MAX_ACTIONS, MAX_CONDITIONS, SET_HEADERS, Condition
from .service import FilterInput

MAX_ARTICLE_ID = 2**31 - 1  # ids are 32-bit integers


class ConditionForm(Form):
    # A sub-form (no CSRF of its own): the outer FlaskForm carries the token.
    header = StringField("Header", render_kw={"list": "match-headers", "autocomplete": "off"})
    pattern = StringField("Value (regular expression)")
    negate = BooleanField("Negate")


class ActionForm(Form):
    header = SelectField(
        "Header", choices={"": "-", **{h: h for h in SET_HEADERS}}, validate_choice=False
    )
    value = StringField("Value")


class FilterForm(FlaskForm):
    name = StringField("Name *")
    stop_after_match = BooleanField("Stop after match")
    conditions = FieldList(
        FormField(ConditionForm), min_entries=MAX_CONDITIONS, max_entries=MAX_CONDITIONS
    )
    actions = FieldList(FormField(ActionForm), min_entries=MAX_ACTIONS, max_entries=MAX_ACTIONS)
    comment = TextAreaField("Comment", render_kw={"rows": 2})
    validity = SelectField(
        "Validity *", choices={v: v for v in VALIDITIES}, default="valid", validate_choice=False
    )
    test_message = TextAreaField(
        "Raw message",
        render_kw={"rows": 8, "spellcheck": "false"},
        description="Paste a whole message (headers and body) to see what this filter does.",
    )
    test_article = whole_number_field(
        "or a stored article (id)",
        1,
        MAX_ARTICLE_ID,
        required=False,
        help_text="The raw mail of an article already fetched.",
    )
    submit = SubmitField("Save")
    test = SubmitField("Test")


class ImportForm(FlaskForm):
    file = FileField("Filters file (JSON export)")
    submit = SubmitField("Import")


def form_data(data: FilterInput) -> dict:
    """The form's initial data for a stored filter."""
    return {
        "name": data.name,
        "stop_after_match": data.stop_after_match,
        "conditions": [
            {"header": c.header, "pattern": c.pattern, "negate": c.negate} for c in data.conditions
        ],
        "actions": [{"header": h, "value": v} for h, v in data.actions],
        "comment": data.comment,
        "validity": data.validity,
    }


def form_input(form: FilterForm) -> FilterInput:
    """The filter as typed: empty rows are left out."""
    conditions = [
        Condition((row.header.data or "").strip(), row.pattern.data or "", bool(row.negate.data))
        for row in form.conditions
        if (row.header.data or "").strip() or row.pattern.data
    ]
    actions = [
        ((row.header.data or "").strip(), row.value.data or "")
        for row in form.actions
        if (row.header.data or "").strip() or (row.value.data or "").strip()
    ]
    return FilterInput(
        name=form.name.data or "",
        conditions=conditions,
        actions=actions,
        stop_after_match=bool(form.stop_after_match.data),
        comment=form.comment.data,
        validity=form.validity.data or "valid",
    )
