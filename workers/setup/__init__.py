"""The offline set-up of the default models (python -m workers setup)."""
