"""The fetch scheduler process: `python -m scheduler` or `flask --app wsgi scheduler run`."""
