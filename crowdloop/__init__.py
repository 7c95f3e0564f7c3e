"""crowdloop: RLHF human-feedback data collection on crowdsourcing marketplaces."""

__version__ = "0.1.0"
