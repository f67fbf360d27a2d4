"""The PostMaster Filters screens: validate, call the service, flash, redirect."""

from __future__ import annotations

import json

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from werkzeug.wrappers import Response

from ..auth import current_admin_name
from ..extensions import db
from ..models import PostmasterFilter
from ..postmaster.filters import MATCH_HEADERS, FilterReport
from ..validation import ValidationError
from .forms import FilterForm, ImportForm, form_data, form_input
from .service import (
    article_source,
    create_filter,
    delete_filter,
    export_filters,
    import_filters,
    input_from_filter,
    list_filters,
    try_filter,
    update_filter,
)

bp = Blueprint("postmaster_filters", __name__, url_prefix="/postmaster-filters")


def _get(filter_id: int) -> PostmasterFilter:
    row = db.session.get(PostmasterFilter, filter_id)
    if row is None:
        abort(404)
    return row


@bp.route("/")
def index() -> str:
    rows = [(row, input_from_filter(row)) for row in list_filters()]
    return render_template("filters/index.html", rows=rows, import_form=ImportForm())


def _show_errors(form: FilterForm, error: ValidationError) -> None:
    for key, message in error.errors.items():
        target = form[key] if key in form else form.name
        target.errors = [*target.errors, message]


def _run_test(form: FilterForm) -> FilterReport | None:
    """The Test button: the filter as typed against the pasted message; stores nothing."""
    try:
        if (form.test_article.data or "").strip():
            raw = article_source(int(form.test_article.data))
        else:
            raw = (form.test_message.data or "").encode("utf-8", "surrogateescape")
        return try_filter(form_input(form), raw)
    except ValidationError as e:
        for key, message in e.errors.items():
            field = {"message": "test_message", "article_id": "test_article"}.get(key, key)
            form[field].errors = [*form[field].errors, message]
        return None


@bp.route("/add", methods=["GET", "POST"])
@bp.route("/<int:filter_id>", methods=["GET", "POST"])
def edit(filter_id: int | None = None) -> Response | str:
    row = _get(filter_id) if filter_id is not None else None
    form = FilterForm(data=form_data(input_from_filter(row)) if row is not None else None)
    report = None
    if form.validate_on_submit():
        if form.test.data:
            report = _run_test(form)
        else:
            try:
                if row is None:
                    row = create_filter(form_input(form), current_admin_name())
                else:
                    update_filter(row, form_input(form), current_admin_name())
            except ValidationError as e:
                db.session.rollback()
                _show_errors(form, e)
            else:
                flash(f"Filter {row.name} saved.", "success")
                return redirect(url_for("postmaster_filters.index"))
    return render_template(
        "filters/form.html",
        form=form,
        filter=row if filter_id is not None else None,
        report=report,
        match_headers=MATCH_HEADERS,
    )


@bp.route("/<int:filter_id>/delete", methods=["GET", "POST"])
def delete(filter_id: int) -> Response | str:
    row = _get(filter_id)
    form = ImportForm()  # only for its CSRF check
    if form.validate_on_submit():
        name = row.name
        delete_filter(row)
        flash(f"Filter {name} deleted.", "success")
        return redirect(url_for("postmaster_filters.index"))
    return render_template("filters/delete.html", filter=row)


@bp.route("/export")
def export() -> Response:
    body = json.dumps(export_filters(), indent=2) + "\n"
    return Response(
        body,
        mimetype="application/json",
        headers={"Content-Disposition": "attachment; filename=postmaster-filters.json"},
    )


@bp.route("/import", methods=["POST"])
def import_() -> Response:
    form = ImportForm()
    if not form.validate_on_submit() or not form.file.data:
        flash("Choose an exported filters file to import.", "error")
        return redirect(url_for("postmaster_filters.index"))
    try:
        created, updated = import_filters(form.file.data.read(), current_admin_name())
    except ValidationError as e:
        flash("Nothing imported: " + "; ".join(e.errors.values()), "error")
    else:
        flash(f"Imported: {created} filters created, {updated} updated.", "success")
    return redirect(url_for("postmaster_filters.index"))
