"""The demonstrations pipeline end to end on the Prolific fake: prompts are written, verified
by other participants, answered, verified again and exported as SFT rows, with every answer
in the shape of Prolific's own records (tests/contract/harness_prolific.py names the
sources). The writing answers come back as `answer[0].value` here and as `text` in the
connector tests; either way the worker's text must reach the dataset unchanged."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crowdloop.db import session_scope
from crowdloop.models.domain import Stage
from crowdloop.models.spec import CampaignSpec
from crowdloop.stages.export import export_sft
from crowdloop.stages.plan import register_campaign
from crowdloop.stages.preflight import check_capabilities
from crowdloop.stages.rounds import RoundOps, bare_ops, run_rounds
from tests.contract.harness_prolific import (
    FakeProlific,
    Json,
    answer_value_shape,
    default_answer,
    make_connector,
)

CAMPAIGN = "prolific-demo"
STAGES = [Stage.PROMPTS, Stage.RESPONSES, Stage.VERIFY]


def written(record: Json) -> str:
    """What the (fake) participant writes: unique per datapoint, so it can be traced."""
    return f"Top 5 answer written for {record['crowdloop_key']}"


def crowd(shape: Callable[[Json], Json]) -> Callable[[Json], Json]:
    """Participants who accept every text and write a traceable one, in `shape`."""

    def answer(record: Json) -> Json:
        body = shape(record)
        if body["type"] == "free_text":
            if "text" in body:
                body["text"] = written(record)
            else:
                body["answer"] = [{"value": written(record)}]
        return body

    return answer


@pytest.mark.parametrize("shape", [answer_value_shape, default_answer], ids=["answer", "text"])
def test_writing_answers_become_the_workers_text_in_the_sft_export(
    sqlite_url: str, tmp_path: Path, shape: Callable[[Json], Json]
) -> None:
    spec = CampaignSpec.model_validate(
        {
            "name": CAMPAIGN,
            "output_dir": str(tmp_path),
            "poll_interval_s": 0.01,
            "stage_timeout_s": 30,
            "connector": {"name": "prolific"},
            "demonstrations": {
                "topics": ["rivers", "lakes"],
                "verification_overlap": 2,
                "golden_share": 0,
                "export": {"path": str(tmp_path / "sft.jsonl")},
            },
        }
    )
    with session_scope() as s:
        register_campaign(s, spec)
    fake = FakeProlific(list_page_size=50)
    answer = crowd(shape)
    with make_connector(fake, page_limit=50) as connector:
        check_capabilities(spec, connector)
        ops = bare_ops(connector)

        def wait_and_sync(campaign_id: str, stages: list[Stage]) -> Any:
            for batch_id in list(fake.batches):  # the crowd answers what is published
                fake.work(batch_id, answer=answer)
            return ops.wait_and_sync(campaign_id, stages)

        fields = {name: getattr(ops, name) for name in RoundOps.__dataclass_fields__}
        rounds = run_rounds(
            CAMPAIGN,
            STAGES,
            RoundOps(**{**fields, "wait_and_sync": wait_and_sync}),
            advance=True,
            max_rounds=12,
        )
    n, path = export_sft(CAMPAIGN, tmp_path / "sft.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rounds <= 12 and n == 2 == len(rows)
    for row in rows:
        # The completion is exactly what the participant wrote for the response task.
        assert row["completion"].startswith("Top 5 answer written for ")
        assert row["prompt"].startswith("Top 5 answer written for ")
    # Every writing answer arrived in the chosen shape, none was quarantined.
    writing = [r for r in fake.responses if r["metadata"]["crowdloop_kind"].startswith("write")]
    assert writing and all(
        ("answer" in r["response"]) == (shape is answer_value_shape) for r in writing
    )
