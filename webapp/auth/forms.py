"""The sign-in form, and the forms of the Admins screen."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired

from .service import MIN_PASSWORD_LENGTH


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])
    submit = SubmitField("Sign in")


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField(
        "Current password",
        validators=[DataRequired("Enter your current password.")],
        render_kw={"autocomplete": "current-password"},
    )
    new_password = PasswordField(
        "New password",
        validators=[DataRequired("Enter the new password.")],
        render_kw={"autocomplete": "new-password"},
        description=f"At least {MIN_PASSWORD_LENGTH} characters. Every other session of yours "
        "ends (other browsers and devices sign in again).",
    )
    new_password_again = PasswordField(
        "New password again",
        validators=[DataRequired("Enter the new password again.")],
        render_kw={"autocomplete": "new-password"},
    )
    submit = SubmitField("Change password")


class AddAdminForm(FlaskForm):
    username = StringField(
        "Username",
        validators=[DataRequired("Enter a username.")],
        render_kw={"autocomplete": "off"},
    )
    password = PasswordField(
        "Password",
        validators=[DataRequired("Enter a password.")],
        render_kw={"autocomplete": "new-password"},
        description=f"At least {MIN_PASSWORD_LENGTH} characters; the new admin can change it.",
    )
    password_again = PasswordField(
        "Password again",
        validators=[DataRequired("Enter the password again.")],
        render_kw={"autocomplete": "new-password"},
    )
    submit = SubmitField("Add admin")
