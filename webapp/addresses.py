"""Email Addresses screen and CLI (placeholder until the screens land)."""

from flask import Blueprint
from flask.cli import AppGroup

bp = Blueprint("addresses", __name__, url_prefix="/email-addresses")
system_address_cli = AppGroup("system-address", help="Email addresses linked to queues.")
