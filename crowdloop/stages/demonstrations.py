"""Advance the demonstrations pipeline: written text -> verification -> verdict -> next work.

prompt writing -> verify prompt -> (accepted) response writing -> verify response -> SFT pair.
A rejected text is written again by another worker, at most `max_attempts` times.
Runs after every sync; everything it creates has a derived id, so running it twice is
harmless.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlmodel import Session, col, select

from crowdloop.aggregation.verdicts import aggregate_verdicts
from crowdloop.db import insert_ignore, session_scope
from crowdloop.ids import stable_id
from crowdloop.models.domain import Stage
from crowdloop.models.spec import CampaignSpec, GoldenVerificationRow, load_jsonl
from crowdloop.models.tables import (
    Item,
    ItemState,
    Judgment,
    JudgmentStatus,
    Prompt,
    Response,
)
from crowdloop.stages.items import move_items
from crowdloop.stages.plan import (
    golden_count,
    golden_verify_items,
    load_spec,
    verify_item,
    write_prompt_item,
    write_response_item,
)

DEMO_STAGES = [Stage.PROMPTS, Stage.RESPONSES, Stage.VERIFY]


@dataclass
class AdvanceResult:
    texts_stored: int = 0
    verdicts: int = 0
    accepted: int = 0
    rejected: int = 0
    new_items: int = 0


def advance(campaign_id: str) -> AdvanceResult:
    result = AdvanceResult()
    with session_scope() as s:
        spec = load_spec(s, campaign_id)
        if spec.demonstrations is None:
            return result
        new_items: list[dict[str, object]] = []
        result.texts_stored = _store_texts(s, spec, new_items)
        new_items += _golden_top_up(s, spec, new_items)
        insert_ignore(s, Item, new_items, ["id"])
        result.new_items += len(new_items)
        s.flush()
        follow_up: list[dict[str, object]] = []
        _apply_verdicts(s, spec, result, follow_up)
        insert_ignore(s, Item, follow_up, ["id"])
        result.new_items += len(follow_up)
    return result


def _trusted_texts(s: Session, item_ids: list[str]) -> dict[str, tuple[str, str | None]]:
    """The first trusted answer per writing item: item id -> (text, author)."""
    out: dict[str, tuple[str, str | None]] = {}
    rows = s.exec(
        select(Judgment.item_id, Judgment.text, Judgment.worker_id)
        .where(
            col(Judgment.item_id).in_(item_ids),
            Judgment.status == JudgmentStatus.VALID,
            col(Judgment.excluded).is_(False),
        )
        .order_by(col(Judgment.submitted_at), col(Judgment.external_id))
    ).all()
    for item_id, text, worker in rows:
        if item_id is not None and text and item_id not in out:
            out[item_id] = (text, worker)
    return out


def _store_texts(s: Session, spec: CampaignSpec, new_items: list[dict[str, object]]) -> int:
    writing = list(
        s.exec(
            select(Item).where(
                Item.campaign_id == spec.name,
                col(Item.kind).in_(["write_prompt", "write_response"]),
                Item.state == ItemState.COLLECTED,
            )
        ).all()
    )
    texts = _trusted_texts(s, [i.id for i in writing])
    prompts: list[dict[str, object]] = []
    responses: list[dict[str, object]] = []
    for item in writing:
        text, author = texts[item.id]
        if item.kind == "write_prompt":
            topic = (item.subject_id or "").rsplit("#", 1)[0]
            prompt_id = stable_id("p", item.id)
            prompts.append(
                Prompt(
                    id=prompt_id,
                    campaign_id=spec.name,
                    text=text,
                    source="crowd",
                    topic=topic,
                    author=author,
                    origin_item=item.id,
                ).model_dump()
            )
            new_items.append(verify_item(spec, "prompt", prompt_id, "", text, author))
        else:
            prompt = s.get(Prompt, item.subject_id)
            assert prompt is not None
            response_id = stable_id("r", item.id)
            responses.append(
                Response(
                    id=response_id,
                    campaign_id=spec.name,
                    prompt_id=prompt.id,
                    text=text,
                    source="crowd",
                    author=author,
                    origin_item=item.id,
                ).model_dump()
            )
            new_items.append(verify_item(spec, "response", response_id, prompt.text, text, author))
    insert_ignore(s, Prompt, prompts, ["id"])
    insert_ignore(s, Response, responses, ["id"])
    move_items(s, [i.id for i in writing], ItemState.DONE, from_=ItemState.COLLECTED)
    return len(writing)


def _golden_top_up(
    s: Session, spec: CampaignSpec, new_items: list[dict[str, object]]
) -> list[dict[str, object]]:
    demo = spec.demonstrations
    assert demo is not None
    if demo.golden_file is None or demo.golden_share <= 0:
        return []
    verify = s.exec(
        select(Item.is_golden).where(Item.campaign_id == spec.name, Item.kind == "verify")
    ).all()
    real = sum(1 for g in verify if not g) + sum(1 for i in new_items if i["kind"] == "verify")
    have = sum(1 for g in verify if g)
    need = golden_count(real, demo.golden_share) - have
    if need <= 0:
        return []
    rows = load_jsonl(demo.golden_file, GoldenVerificationRow)
    return golden_verify_items(spec, rows, have, need)


def _apply_verdicts(
    s: Session, spec: CampaignSpec, result: AdvanceResult, follow_up: list[dict[str, object]]
) -> None:
    demo = spec.demonstrations
    assert demo is not None
    ready = list(
        s.exec(
            select(Item).where(
                Item.campaign_id == spec.name,
                Item.kind == "verify",
                col(Item.state).in_([ItemState.COLLECTED, ItemState.EXHAUSTED]),
            )
        ).all()
    )
    if not ready:
        return
    # Dawid-Skene learns each worker's confusion from all verdicts, golden ones included.
    votes = s.exec(
        select(Judgment.item_id, Judgment.worker_id, Judgment.label)
        .join(Item, col(Item.id) == col(Judgment.item_id))
        .where(
            Judgment.campaign_id == spec.name,
            Item.kind == "verify",
            Judgment.status == JudgmentStatus.VALID,
            col(Judgment.excluded).is_(False),
        )
    ).all()
    frame = pd.DataFrame(votes, columns=["task", "worker", "label"])
    verdicts: dict[str, tuple[str, float]] = {}
    if not frame.empty:
        agg = aggregate_verdicts(frame, demo.aggregation)
        verdicts = {
            str(r.task): (str(r.label), float(r.confidence)) for r in agg.itertuples(index=False)
        }
    done: list[str] = []
    for item in ready:
        if item.state == ItemState.EXHAUSTED:
            continue
        done.append(item.id)
        if item.is_golden or item.id not in verdicts:
            continue
        label, confidence = verdicts[item.id]
        result.verdicts += 1
        if item.payload["target"] == "prompt":
            prompt = s.get(Prompt, item.subject_id)
            assert prompt is not None
            prompt.verdict, prompt.confidence = label, confidence
            s.add(prompt)
            if label == "accept":
                result.accepted += 1
                follow_up.append(write_response_item(spec, prompt, 0, prompt.author))
            else:
                result.rejected += 1
                origin = s.get(Item, prompt.origin_item)
                if origin is not None and origin.attempt + 1 < demo.max_attempts:
                    topic, slot = (origin.subject_id or "#0").rsplit("#", 1)
                    follow_up.append(
                        write_prompt_item(spec, topic, int(slot), attempt=origin.attempt + 1)
                    )
        else:
            response = s.get(Response, item.subject_id)
            assert response is not None
            response.verdict, response.confidence = label, confidence
            s.add(response)
            if label == "accept":
                result.accepted += 1
            else:
                result.rejected += 1
                origin = s.get(Item, response.origin_item)
                prompt = s.get(Prompt, response.prompt_id)
                if origin is not None and prompt and origin.attempt + 1 < demo.max_attempts:
                    follow_up.append(
                        write_response_item(spec, prompt, origin.attempt + 1, prompt.author)
                    )
    move_items(s, done, ItemState.DONE, from_=ItemState.COLLECTED)


def open_work(campaign_id: str, stages: list[Stage]) -> int:
    """Items of these stages still waiting on the crowd, or (writing and verification
    items) on a decision; a collected comparison needs nothing more until aggregation."""
    from sqlalchemy import and_, func, or_

    with session_scope() as s:
        return int(
            s.exec(
                select(func.count())
                .select_from(Item)
                .where(
                    Item.campaign_id == campaign_id,
                    col(Item.stage).in_([st.value for st in stages]),
                    or_(
                        col(Item.state).in_([ItemState.PENDING, ItemState.PUSHED]),
                        and_(col(Item.state) == ItemState.COLLECTED, col(Item.kind) != "compare"),
                    ),
                )
            ).one()
        )
