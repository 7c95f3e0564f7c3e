"""Prolific connector: crowdloop batches as Prolific AI Task Builder studies.

See `connector.py` for the mapping, the endpoints used, and where each is documented.
"""
