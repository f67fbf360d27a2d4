"""`flask --app wsgi oauth2-profile add|list` (the consent of an account is
`mail-account authorize ID`)."""

from __future__ import annotations

import json

import click
from flask.cli import AppGroup

from ..cli_common import fail, read_secret_stdin
from ..timefmt import iso_date
from ..validation import ValidationError
from .providers import PROVIDERS, SECRET_WARNING_DAYS
from .service import (
    ProfileInput,
    certificate_details,
    create_profile,
    list_profiles,
    profile_summary,
    secret_warning,
)

oauth2_profile_cli = AppGroup(
    "oauth2-profile", help="OAuth2 profiles (Microsoft 365, Google or Custom apps)."
)

CLI_ACTOR = "cli"
OPTION_NAMES = {
    "name": "--name",
    "provider": "--provider",
    "client_id": "--client-id",
    "client_secret": "--client-secret-stdin",
    "tenant_id": "--tenant-id",
    "authorize_url": "--authorize-url",
    "token_url": "--token-url",
    "jwks_url": "--jwks-url",
    "issuer": "--issuer",
    "validity": "--validity",
    "secret_expires_on": "--secret-expires",
    "comment": "--comment",
    "grant": "--grant",
    "credential": "--credential",
    "private_key": "--private-key-file",
    "certificate": "--certificate-file",
}


@oauth2_profile_cli.command("add")
@click.option("--name", required=True)
@click.option("--provider", required=True, help="One of: " + ", ".join(PROVIDERS))
@click.option("--client-id", required=True, help="Application (client) ID.")
@click.option(
    "--client-secret-stdin", is_flag=True, help="Read the client secret's Value from stdin."
)
@click.option(
    "--tenant-id", default="", help="MicrosoftAzure: tenant GUID or domain (Google: none)."
)
@click.option("--authorize-url", help="Custom provider: authorize URL ({tenant} allowed).")
@click.option("--token-url", help="Custom provider: token URL ({tenant} allowed).")
@click.option("--jwks-url", help="Custom provider, optional: JWKS URL (signature checked).")
@click.option("--issuer", help="Custom provider, optional: the id_token's exact iss.")
@click.option("--secret-expires", help=f"YYYY-MM-DD: warn {SECRET_WARNING_DAYS} days before.")
@click.option("--validity", default="valid", show_default=True)
@click.option("--comment")
@click.option(
    "--grant",
    type=click.Choice(["delegated", "app-only"]),
    default="delegated",
    show_default=True,
    help="delegated: each account's browser consent; app-only: client credentials.",
)
@click.option(
    "--credential",
    type=click.Choice(["secret", "certificate"]),
    default="secret",
    show_default=True,
)
@click.option(
    "--certificate-file",
    type=click.Path(exists=True, dir_okay=False),
    help="Certificate (PEM), with --credential certificate.",
)
@click.option(
    "--private-key-file",
    type=click.Path(exists=True, dir_okay=False),
    help="Its private key (PEM, no passphrase); stored encrypted.",
)
def add_command(
    name: str,
    provider: str,
    client_id: str,
    client_secret_stdin: bool,
    tenant_id: str,
    authorize_url: str | None,
    token_url: str | None,
    jwks_url: str | None,
    issuer: str | None,
    secret_expires: str | None,
    validity: str,
    comment: str | None,
    grant: str,
    credential: str,
    certificate_file: str | None,
    private_key_file: str | None,
) -> None:
    """Add an OAuth2 profile; prints its id. The secret comes from stdin, never argv; a
    certificate and its key from files."""
    if credential == "certificate" and client_secret_stdin:
        fail("--client-secret-stdin: a certificate profile has no client secret.")
    if credential == "secret" and (certificate_file or private_key_file):
        fail("--certificate-file/--private-key-file need --credential certificate.")
    data = ProfileInput(
        name=name,
        provider=provider,
        client_id=client_id,
        client_secret=read_secret_stdin() if client_secret_stdin else None,
        tenant_id=tenant_id,
        authorize_url=authorize_url,
        token_url=token_url,
        jwks_url=jwks_url,
        issuer=issuer,
        validity=validity,
        secret_expires_on=secret_expires,
        comment=comment,
        grant=grant.replace("-", "_"),
        credential=credential,
        private_key=_read_pem(private_key_file),
        certificate=_read_pem(certificate_file),
    )
    try:
        profile = create_profile(data, CLI_ACTOR)
    except ValidationError as e:
        fail("; ".join(f"{OPTION_NAMES.get(k, k)}: {v}" for k, v in e.errors.items()))
    click.echo(profile.id)
    details = certificate_details(profile)
    if details:
        click.echo(
            f"Certificate thumbprint {details['thumbprint']} (x5t {details['x5t']}), expires "
            f"{details['not_after']}: upload the certificate to the app registration.",
            err=True,
        )
    warning = secret_warning(profile)
    if warning:
        click.echo(f"Warning: {warning}", err=True)


@oauth2_profile_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON (never includes the secret).")
def list_command(as_json: bool) -> None:
    """List OAuth2 profiles (without secrets)."""
    profiles = list_profiles()
    if as_json:
        click.echo(json.dumps([profile_summary(p) for p in profiles], indent=2))
        return
    if not profiles:
        click.echo("No OAuth2 profiles.")
        return
    for p in profiles:
        expires = iso_date(p.secret_expires_on) or "-"
        grant = "app-only" if p.grant == "app_only" else "delegated"
        click.echo(
            f"{p.id}\t{p.name}\t{p.provider}\t{p.tenant_id or '-'}\t{p.client_id}\t{grant}\t"
            f"{p.credential} expires {expires}\t{p.validity}"
        )


def _read_pem(path: str | None) -> str | None:
    """A PEM file's text (a key or certificate is a few kilobytes)."""
    if not path:
        return None
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read(64 * 1024)
    except OSError as e:
        fail(f"{path}: cannot be read ({e.strerror}).")
