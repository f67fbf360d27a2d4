"""Queues screen and CLI (placeholder until the screens land)."""

from flask import Blueprint
from flask.cli import AppGroup

bp = Blueprint("queues", __name__, url_prefix="/queues")
queue_cli = AppGroup("queue", help="Queues.")
