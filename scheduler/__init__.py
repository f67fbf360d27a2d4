"""The fetch scheduler process (python -m scheduler)."""
