"""Provider errors in plain words: the error, its description, and for common AADSTS codes
what it means and how to fix it. Nothing here ever contains a token or a secret."""

from __future__ import annotations

import re

# invalid_grant means the grant is dead (expired, revoked, password reset, sign-in frequency):
# only a new sign-in helps.
REAUTH_ERRORS = frozenset({"invalid_grant", "interaction_required"})
# Worth retrying on the next run.
TRANSIENT_ERRORS = frozenset({"temporarily_unavailable", "server_error"})

_AADSTS = re.compile(r"AADSTS(\d+)")

EXPLANATIONS: dict[str, str] = {
    "50011": (
        "The redirect URI is not registered for the app. In Azure, App registrations > your app "
        '> Authentication, add a platform "Web" with exactly this redirect URI: {redirect_uri}'
    ),
    "7000215": (
        "The client secret is wrong. Enter the secret's Value (shown once when it was created), "
        "not its Secret ID, in the OAuth2 profile."
    ),
    "7000222": (
        "The client secret has expired. Create a new client secret in Azure (Certificates & "
        "secrets) and enter its Value in the OAuth2 profile."
    ),
    "90002": (
        "The tenant was not found. Check the tenant ID (Directory ID) or domain in the OAuth2 "
        "profile."
    ),
    "65001": (
        "Consent is missing. Sign in again and accept, or ask an Azure administrator to grant "
        "admin consent for IMAP.AccessAsUser.All / POP.AccessAsUser.All (app-only access: "
        "IMAP.AccessAsApp / POP.AccessAsApp)."
    ),
    "7000229": (
        "The app has no service principal in this tenant, so nobody granted it consent: ask an "
        "Azure administrator to grant admin consent for the app (Enterprise applications)."
    ),
    "700027": (
        "The certificate was refused: upload this profile's certificate (see its thumbprint on "
        "the OAuth2 profile) to the app registration under Certificates & secrets, or renew "
        "an expired one there and here."
    ),
    "700021": "The client assertion names another app: check the client ID in the profile.",
    "700023": "The client assertion was made for another tenant: check the tenant ID.",
    "700024": ("The client assertion is outside its valid time: check this server's clock (NTP)."),
    "1002012": (
        "App-only access needs the scope https://outlook.office365.com/.default (client "
        "credentials take the application permissions granted to the app)."
    ),
    "65004": (
        "Consent was declined at the sign-in page. Try again and accept, or ask an Azure "
        "administrator to grant admin consent."
    ),
    "90094": "An administrator must grant consent for this app in Azure (admin consent).",
    "50194": (
        'The app is single-tenant: it needs the tenant ID or domain, not "common". Enter the '
        "tenant ID in the OAuth2 profile."
    ),
    "700016": (
        "The application was not found in this tenant: check the client ID (the Application "
        "(client) ID of the app registration) and the tenant ID in the OAuth2 profile."
    ),
    "50020": (
        "The signed-in user is not a member of this tenant. Sign in with an account of the "
        "tenant (use a private window to avoid an already signed-in account)."
    ),
    "50034": "The user account does not exist in this tenant. Check the username.",
    "700082": "The refresh token expired after a long inactivity: press Re-authorize.",
    "70008": "The sign-in has expired: press Re-authorize.",
    "50173": "The sign-in was revoked (e.g. a password reset): press Re-authorize.",
    "70043": "A sign-in frequency policy requires a new sign-in: press Re-authorize.",
    "54005": "This authorization code was already used. Start the sign-in again.",
}


# Google answers without codes: its error (and description) say what happened.
GOOGLE_EXPLANATIONS: dict[str, str] = {
    "Token has been expired or revoked.": (
        "Google ended this sign-in (the password was changed, the app's access was removed "
        "in the Google account, or the app is still in Testing status, whose sign-ins last 7 "
        "days): press Re-authorize."
    ),
    "redirect_uri_mismatch": (
        "The redirect URI is not registered for the OAuth client. In the Google Cloud console, "
        "APIs & Services > Credentials > your OAuth client, add exactly this Authorized "
        "redirect URI: {redirect_uri}"
    ),
}


def aadsts_code(description: str | None) -> str | None:
    match = _AADSTS.search(description or "")
    return match.group(1) if match else None


def first_line(description: str | None) -> str:
    """Microsoft appends Trace ID, Correlation ID and Timestamp lines; keep the message."""
    return (description or "").strip().splitlines()[0].strip() if description else ""


def explain(error: str | None, description: str | None, redirect_uri: str = "") -> str:
    """One message for the admin: the provider's error, its description and the fix if known."""
    parts = [f"The provider answered: {error or 'error'}"]
    text = first_line(description)
    if text:
        parts[0] += f": {text}"
    code = aadsts_code(description)
    if code:
        fix = EXPLANATIONS.get(code)
    else:
        fix = GOOGLE_EXPLANATIONS.get(text) or GOOGLE_EXPLANATIONS.get(error or "")
    if fix:
        parts.append(fix.format(redirect_uri=redirect_uri or "(see the profile)"))
    return ". ".join(p.rstrip(".") for p in parts) + "."
