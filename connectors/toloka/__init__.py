"""Toloka (toloka.ai) marketplace connector; see `connector.py` for the API mapping."""
