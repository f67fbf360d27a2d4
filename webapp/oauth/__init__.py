"""OAuth2 (Microsoft 365, Google, Custom) for mail accounts: profiles, the consent flow and
the token store.

The engine (imported by the fetch engine; imports no screen, form or CLI):
- providers.py: provider presets (MicrosoftAzure, Google, Custom), URL templates, scopes per
  protocol and provider, tenant validation, mail hosts, SECRET_WARNING_DAYS
- tokens.py: storing tokens, refreshing them (serialized per account), access_token_for
- app_tokens.py: app-only (client credentials) tokens, one per profile, shared and serialized
- client.py: the token endpoint client (client secret or signed client assertion), row locks
- certificates.py: PEM key and certificate checks, thumbprints, the private_key_jwt assertion
- identity.py: who signed in (the id_token, checked)
- errors.py: provider errors and AADSTS codes in plain words

The feature:
- flow.py: the consent logic: begin_consent, the pending authorization, sign_in at the callback
- service.py: OAuth2 profile operations shared by the screen and the CLI
- forms.py: the OAuth2 profile form
- views.py: the OAuth2 Profiles screen, Re-authorize and the consent callback
- cli.py: `oauth2-profile add|list` (the consent of an account is `mail-account authorize ID`)
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the OAuth2 screens and the `oauth2-profile` command group."""
    # Imported here, not at the top: the fetch engine imports webapp.oauth.tokens, which runs
    # this file, and must not load the screens (they import the mail account service, which
    # imports the fetch engine).
    from . import cli, views

    app.register_blueprint(views.profiles_bp)
    app.register_blueprint(views.consent_bp)
    app.cli.add_command(cli.oauth2_profile_cli)
