"""Duplicates against earlier campaigns: the signature table of accepted crowd texts.

Within a campaign the text checks hold the campaign's own texts in memory
(`crowdloop.textcheck.DuplicateIndex`): a campaign is small, and a copier copies texts
still waiting for their verdict. Earlier campaigns are not loaded: every text verification
accepts is signed once (`TextSignature`: the normalised text's hash, the MinHash
signature; `TextBand`: its LSH band keys), and a new text is looked up by its own hash and
band keys, so memory and time per text do not grow with the database (at most
`MAX_CANDIDATES` near-copy candidates are compared per text).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import Session, col, select

from crowdloop.db import insert_ignore
from crowdloop.models.tables import Prompt, Response, TextBand, TextSignature
from crowdloop.textcheck import minhash_similarity, signature, similarity

# Near-copy candidates compared per text, those sharing the most band keys first: a text
# at Jaccard 0.7 shares about 4 of 16 bands with its original, an unrelated one 0.
MAX_CANDIDATES = 32


@dataclass(frozen=True)
class Earlier:
    """An accepted text of an earlier campaign that a new text duplicates."""

    text_id: str
    campaign_id: str
    similarity: float


def record_accepted(s: Session, kind: str, rows: Iterable[Prompt | Response]) -> None:
    """Sign texts verification accepted (again: a no-op)."""
    signatures: list[dict[str, object]] = []
    bands: list[dict[str, object]] = []
    for row in rows:
        sig = signature(row.text)
        scope = row.topic if isinstance(row, Prompt) else None
        signatures.append(
            {
                "kind": kind,
                "text_id": row.id,
                "campaign_id": row.campaign_id,
                "scope": scope,
                "digest": sig.digest,
                "minhash": sig.minhash,
            }
        )
        bands += [{"kind": kind, "key": key, "text_id": row.id} for key in set(sig.bands)]
    insert_ignore(s, TextSignature, signatures, ["kind", "text_id"])
    insert_ignore(s, TextBand, bands, ["kind", "key", "text_id"])


def forget(s: Session, kind: str, text_id: str) -> None:
    """Drop a text's signature: verified again (its author was blocked) and rejected, it is
    no longer an accepted text."""
    for table in (TextBand, TextSignature):
        for row in s.exec(select(table).where(table.kind == kind, table.text_id == text_id)):
            s.delete(row)


def find_earlier(
    s: Session, kind: str, campaign_id: str, text: str, scope: str | None, threshold: float
) -> Earlier | None:
    """The accepted text of another campaign this text copies, exactly (after
    normalising) or at least `threshold` alike; a near copy of a prompt only within its
    topic (`scope`), as within a campaign (`DuplicateIndex.find`)."""
    sig = signature(text)
    other = col(TextSignature.campaign_id) != campaign_id
    exact = s.exec(
        select(TextSignature.text_id, TextSignature.campaign_id)
        .where(TextSignature.kind == kind, TextSignature.digest == sig.digest, other)
        .order_by(col(TextSignature.text_id))
        .limit(1)
    ).first()
    if exact is not None:
        return Earlier(exact[0], exact[1], 1.0)
    if threshold > 1.0:
        return None
    shared = func.count(col(TextBand.key))
    query = (
        select(TextBand.text_id, shared)
        .join(
            TextSignature,
            (col(TextSignature.kind) == col(TextBand.kind))
            & (col(TextSignature.text_id) == col(TextBand.text_id)),
        )
        .where(TextBand.kind == kind, col(TextBand.key).in_(set(sig.bands)), other)
        .group_by(col(TextBand.text_id))
        .order_by(shared.desc(), col(TextBand.text_id))
        .limit(MAX_CANDIDATES)
    )
    if scope is not None:
        query = query.where(TextSignature.scope == scope)
    candidates = [str(text_id) for text_id, _ in s.exec(query).all()]
    if not candidates:
        return None
    best: Earlier | None = None
    for text_id, campaign, stored, words in _candidates(s, kind, candidates):
        # The text's own words when its row is still there; else the MinHash estimate.
        alike = (
            similarity(text, words)
            if words is not None
            else minhash_similarity(sig.minhash, stored)
        )
        if alike >= threshold and (best is None or alike > best.similarity):
            best = Earlier(text_id, campaign, alike)
    return best


def _candidates(
    s: Session, kind: str, ids: Sequence[str]
) -> list[tuple[str, str, bytes, str | None]]:
    table: type[Prompt] | type[Response] = Prompt if kind == "prompt" else Response
    texts = dict(s.exec(select(table.id, table.text).where(col(table.id).in_(ids))).all())
    rows = s.exec(
        select(TextSignature.text_id, TextSignature.campaign_id, TextSignature.minhash).where(
            TextSignature.kind == kind, col(TextSignature.text_id).in_(ids)
        )
    ).all()
    return [(t, c, m, texts.get(t)) for t, c, m in sorted(rows)]
