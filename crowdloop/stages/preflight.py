"""Preflight policy: what a campaign needs from its marketplace, checked before anything
is created there. A missing capability stops the run; one that only degrades it (no
worker blocking, no review API) becomes a warning the run logs."""

from __future__ import annotations

from crowdloop.connectors.base import Connector
from crowdloop.connectors.errors import NotSupported
from crowdloop.models.domain import Capability
from crowdloop.models.spec import CampaignSpec


def required_capabilities(spec: CampaignSpec) -> set[Capability]:
    need: set[Capability] = set()
    if spec.preferences:
        need.add(Capability.PAIRWISE)
        if spec.preferences.graded:
            need.add(Capability.GRADED_PAIRWISE)
        if spec.preferences.rationale:
            need.add(Capability.RATIONALE)
    if spec.demonstrations:
        need |= {Capability.FREE_TEXT, Capability.EXCLUDE_WORKERS}
        if spec.demonstrations.rationale:
            need.add(Capability.RATIONALE)
    if spec.quality.exam:
        need.add(Capability.QUALIFY_WORKERS)
    if spec.ranking:
        need.add(Capability.RANKING)
    if spec.rating:
        need.add(Capability.RATING)
        if spec.rating.rationale:
            need.add(Capability.RATIONALE)
    return need


def require_qualifications(connector: Connector) -> None:
    """Refuse an exam on a platform that cannot keep unqualified workers off a batch."""
    if Capability.QUALIFY_WORKERS not in connector.capabilities:
        refused = NotSupported(connector.name, Capability.QUALIFY_WORKERS.value)
        refused.args = (
            f"{refused}: the campaign has an exam (quality.exam), which needs "
            f"{Capability.QUALIFY_WORKERS.value} to offer production tasks only to workers "
            "who passed; remove the exam or use a connector that declares it",
        )
        raise refused


def require_ranking(connector: Connector, *, ties: bool = False) -> None:
    """Refuse k-wise ranking tasks on a connector that cannot show and read them (with
    ties, when the campaign allows them)."""
    if Capability.RANKING not in connector.capabilities:
        refused = NotSupported(connector.name, Capability.RANKING.value)
        refused.args = (
            f"{refused}: the campaign has k-wise ranking tasks (its 'ranking' section), which "
            f"the {connector.name} connector cannot publish or read; use a connector that "
            "declares the ranking capability (the simulator and labelstudio do)",
        )
        raise refused
    if ties and Capability.RANKING_TIES not in connector.capabilities:
        refused = NotSupported(connector.name, Capability.RANKING_TIES.value)
        refused.args = (
            f"{refused}: the campaign's ranking tasks allow ties (ranking.ties: true), which "
            f"the {connector.name} connector cannot show or read; set ranking.ties: false",
        )
        raise refused


def require_rating(connector: Connector) -> None:
    """Refuse multi-aspect rating tasks on a connector that cannot show and read them."""
    if Capability.RATING not in connector.capabilities:
        refused = NotSupported(connector.name, Capability.RATING.value)
        refused.args = (
            f"{refused}: the campaign has multi-aspect rating tasks (its 'rating' section), "
            f"which the {connector.name} connector cannot publish or read; use a connector "
            "that declares the rating capability (the simulator does)",
        )
        raise refused


def check_capabilities(spec: CampaignSpec, connector: Connector) -> list[str]:
    """Refuse early what the platform cannot do; return warnings for what degrades."""
    if spec.quality.exam:
        require_qualifications(connector)
    if spec.ranking:
        require_ranking(connector, ties=spec.ranking.ties)
    if spec.rating:
        require_rating(connector)
    for cap in sorted(required_capabilities(spec)):
        connector.require(cap)
    warnings = []
    if spec.quality.on_fail == "block" and Capability.BLOCK_WORKER not in connector.capabilities:
        warnings.append(
            f"{connector.name} cannot block workers: untrusted workers' answers will be "
            "excluded, but they may keep taking tasks"
        )
    if Capability.REVIEW not in connector.capabilities:
        warnings.append(f"{connector.name} has no review API: every submission will be paid")
    return warnings
