"""What the mail parser's forkserver imports (webapp/postmaster/parse/worker.py), and no more.

Importing webapp.postmaster.parse.worker the normal way runs webapp/__init__.py first, which
imports the whole app (Flask, SQLAlchemy, every screen and form): about 60 MB in the
forkserver, shared by every parser worker forked from it, of which the parser needs nothing.
The parser uses only the standard library and nh3. So the forkserver registers `webapp` as a
bare package (its __init__ not run) and imports the parser through it: ≈ 24 MB instead of
≈ 83 MB. Only the forkserver does this; the app's own processes import webapp as usual.

A top-level module because a module inside webapp cannot be imported without webapp/__init__.

multiprocessing re-runs the parent's main module in every child, unless it is a package's
`__main__` (`python -m scheduler`, `flask`, gunicorn). A main that does
`from webapp import create_app` (a wrapper script, `python -m bench.idle_child`) would then
fail in every parser process and every mail would be kept as failed: so the first name asked
of the bare package that it lacks runs the real webapp/__init__.py, and the child simply costs
the app's memory.
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

    def _load_the_app(name: str) -> object:
        if name.startswith("__"):  # probes such as __file__: no reason to load the app
            raise AttributeError(name)
        del _webapp.__getattr__
        init = _package / "__init__.py"
        _webapp.__file__ = str(init)
        exec(compile(init.read_bytes(), str(init), "exec"), _webapp.__dict__)
        return getattr(_webapp, name)

    _webapp.__getattr__ = _load_the_app  # type: ignore[method-assign]
    sys.modules["webapp"] = _webapp

import webapp.postmaster.parse.worker  # noqa: E402,F401  # the point of this module
