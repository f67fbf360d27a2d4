"""Template helpers for accessible forms (used by the `field` macro in _macros.html).

After a server-side error the first invalid field of the page gets the autofocus attribute, so
focus lands there without JavaScript; every other autofocus of that form is dropped (the
browser focuses the first autofocus element only, which might be a valid field above the
error).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, g

_CLAIMED = "_postmaster_autofocus_claimed"


def claim_autofocus() -> bool:
    """True for the first caller of this request (the first invalid field), False after."""
    if getattr(g, _CLAIMED, False):
        return False
    setattr(g, _CLAIMED, True)
    return True


def form_has_errors(field: Any) -> bool:
    """Whether any field of the WTForms form that `field` belongs to has an error."""
    form = getattr(field, "_form", None)
    return bool(form is not None and form.errors)


def init_app(app: Flask) -> None:
    """Make claim_autofocus() and form_has_errors(field) template globals (imported macros
    see globals, not context processors)."""
    app.add_template_global(claim_autofocus)
    app.add_template_global(form_has_errors)
