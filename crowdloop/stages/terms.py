"""What a stage's marketplace batch offers: its reward, its instruction and the
qualification a worker needs to take it, all read from the campaign spec."""

from __future__ import annotations

from crowdloop.models.domain import Money, Stage
from crowdloop.models.spec import CampaignSpec


def stage_reward(spec: CampaignSpec, stage: Stage) -> Money:
    if stage == Stage.EXAM and spec.quality.exam and spec.quality.exam.reward:
        return spec.quality.exam.reward
    if stage in (Stage.COMPARE, Stage.EXAM):
        assert spec.preferences is not None
        return spec.preferences.reward
    if stage == Stage.RANK:
        assert spec.ranking is not None
        return spec.ranking.reward
    if stage == Stage.RATE:
        assert spec.rating is not None
        return spec.rating.reward
    assert spec.demonstrations is not None
    return (
        spec.demonstrations.verify_reward if stage == Stage.VERIFY else spec.demonstrations.reward
    )


def stage_instruction(spec: CampaignSpec, stage: Stage) -> str:
    if stage in (Stage.COMPARE, Stage.EXAM):
        assert spec.preferences is not None
        return spec.preferences.instruction
    if stage == Stage.RANK:
        assert spec.ranking is not None
        return spec.ranking.instruction
    if stage == Stage.RATE:
        assert spec.rating is not None
        return spec.rating.instruction
    demo = spec.demonstrations
    assert demo is not None
    return {
        Stage.PROMPTS: demo.prompt_instruction,
        Stage.RESPONSES: demo.response_instruction,
        Stage.VERIFY: demo.verify_instruction,
    }[stage]


def exam_qualification(campaign_id: str) -> str:
    """The marketplace qualification that exam passers get and production requires."""
    return f"crowdloop-{campaign_id}-exam"


def batch_qualification(spec: CampaignSpec, stage: Stage) -> str | None:
    """The qualification a stage's batch requires: with an exam, comparisons need a pass.

    Verification tasks stay open to all: a pairwise exam says little about judging texts,
    and demonstrations run before preferences, so they would wait on the exam.
    """
    return exam_qualification(spec.name) if spec.quality.exam and stage == Stage.COMPARE else None
