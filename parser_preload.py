"""What the mail parser's forkserver imports (webapp/postmaster/parse/worker.py), and no more.

Importing webapp.postmaster.parse.worker the normal way runs webapp/__init__.py first, which
imports the whole app (Flask, SQLAlchemy, every screen and form): about 60 MB in the
forkserver, shared by every parser worker forked from it, of which the parser needs nothing.
The parser uses only the standard library and nh3. So the forkserver registers `webapp` as a
bare package (its __init__ not run) and imports the parser through it: ≈ 24 MB instead of
≈ 83 MB. Only the forkserver does this; the app's own processes import webapp as usual.

A top-level module because a module inside webapp cannot be imported without webapp/__init__.
"""

from __future__ import annotations

import sys
import types
from importlib.machinery import ModuleSpec
from pathlib import Path

if "webapp" not in sys.modules:
    _package = Path(__file__).resolve().parent / "webapp"
    _spec = ModuleSpec("webapp", None, is_package=True)
    _spec.submodule_search_locations = [str(_package)]
    _webapp = types.ModuleType("webapp", "Postmaster, without its app (parser processes only)")
    _webapp.__spec__ = _spec
    _webapp.__path__ = [str(_package)]
    sys.modules["webapp"] = _webapp

import webapp.postmaster.parse.worker  # noqa: E402,F401  # the point of this module
