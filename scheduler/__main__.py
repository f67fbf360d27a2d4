"""`python -m scheduler`: one fetch scheduler process (see scheduler/runner.py).

Never start it inside web workers; run one or more of these beside gunicorn.
"""

import sys

from webapp import create_app

from .runner import run_scheduler

if __name__ == "__main__":
    sys.exit(run_scheduler(create_app()))
