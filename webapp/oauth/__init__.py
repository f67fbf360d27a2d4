"""OAuth2 (Microsoft 365) for mail accounts: profiles, the consent flow and the token store.

- providers.py: provider presets, URL templates, scopes per protocol, tenant validation
- service.py: the OAuth2 Profiles screen and the profile service shared with the CLI
- flow.py: start_authorization (called by the mail account form), the callback, Re-authorize
- tokens.py: storing tokens, refreshing them (serialized per account), access_token_for
- errors.py: provider errors and AADSTS codes in plain words
- cli.py: `oauth2-profile add|list` and `mail-account authorize ID`
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from . import cli, flow, service

    app.register_blueprint(service.bp)
    app.register_blueprint(flow.bp)
    app.cli.add_command(cli.oauth2_profile_cli)
