"""Label Studio (open source) as a crowdloop connector: see `connector.py` for the API used."""
