"""Register a campaign and plan its first items from the spec and its input files.

Everything here is idempotent: ids derive from the campaign name and the input rows, so
registering the same spec twice changes nothing, and a changed spec under the same name
is refused rather than silently mixed with the old one.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import math
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlmodel import Session, col, select

from crowdloop.db import insert_ignore
from crowdloop.ids import coin, compare_item_id, digest, stable_id
from crowdloop.models.domain import (
    CompareTask,
    Stage,
    VerifyTask,
    WritePromptTask,
    WriteResponseTask,
)
from crowdloop.models.spec import (
    CampaignSpec,
    CandidateRow,
    GoldenPairRow,
    GoldenVerificationRow,
    ListedPairRow,
    PreferencesSpec,
    SpecError,
    iter_jsonl,
    load_campaign,
    read_jsonl_at,
)
from crowdloop.models.stored_spec import SPEC_VERSION, read_stored_spec
from crowdloop.models.tables import Campaign, Item, ItemState, Prompt, Response

if TYPE_CHECKING:
    from crowdloop.stages.ranking import RankingInputs
    from crowdloop.stages.rating import RatingInputs


class CampaignConflict(RuntimeError):
    """A campaign with this name exists with a different spec."""


def spec_hash(spec: CampaignSpec) -> str:
    dump = spec.model_dump(mode="json")
    # A section added later hashes as before while unset, so a campaign registered by an
    # earlier version still matches its own spec file.
    if dump["quality"].get("exam") is None:
        dump["quality"].pop("exam", None)
    if dump.get("ranking") is None:
        dump.pop("ranking", None)
    if dump.get("rating") is None:
        dump.pop("rating", None)
    # The budget is not part of what the campaign collects: its cap moves through
    # budget.raise_cap (recorded, audited), never by re-registering under a new hash.
    dump.pop("budget", None)
    blob = json.dumps(dump, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


# Fields that only steer how a campaign runs, not what work it is made of: they may change
# in place on an existing campaign (`crowdloop run --update`). Everything else (inputs,
# rewards, overlap, golden and exam design, quality policy) shapes items already planned,
# published or paid for, and needs a new campaign name.
MUTABLE_FIELDS = (
    "poll_interval_s",
    "stage_timeout_s",
    "stall_after_s",
    "batch_size",
    "output_dir",
    "connector.options",
    "connector.credentials_block",
    "retraining",
    "budget",
)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out or {prefix: {}}
    return {prefix: value}


def spec_changes(stored: Campaign, new: CampaignSpec) -> list[str]:
    """Dotted paths whose value differs. The stored spec is read through today's model
    first (upgraded from its version), so a field added by a later version (with its
    default) is no change."""
    before = _flatten(stored_spec(stored).model_dump(mode="json"))
    after = _flatten(new.model_dump(mode="json"))
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def _mutable(path: str) -> bool:
    return any(path == f or path.startswith(f + ".") for f in MUTABLE_FIELDS)


def register_campaign(session: Session, spec: CampaignSpec, *, update: bool = False) -> Campaign:
    """Create the campaign and its initial items, or return the existing one.

    A spec that differs from the stored one is refused with the fields that differ, unless
    every difference is a run setting (`MUTABLE_FIELDS`) and `update` is set: then the
    stored spec is replaced and the campaign goes on with the new settings.
    """
    digest = spec_hash(spec)
    existing = session.get(Campaign, spec.name)
    if existing is not None:
        if existing.spec_hash == digest:
            return existing
        changed = spec_changes(existing, spec)
        if not changed:  # only the hash's notion of the spec moved (a newer version)
            existing.spec_hash = digest
            session.add(existing)
            return existing
        fixed = [c for c in changed if not _mutable(c)]
        if fixed:
            raise CampaignConflict(
                f"campaign {spec.name!r} already exists with a different spec: "
                f"{', '.join(fixed[:6])}{' …' if len(fixed) > 6 else ''} cannot change in "
                "place (they shape work already planned or paid for); give the changed "
                "campaign a new name"
            )
        if not update:
            raise CampaignConflict(
                f"campaign {spec.name!r} already exists; the file changes "
                f"{', '.join(changed)}, which may change in place: rerun with --update "
                "(crowdloop run FILE --update) to apply them"
            )
        existing.spec = spec.model_dump(mode="json")
        existing.spec_version = SPEC_VERSION
        existing.spec_hash = digest
        session.add(existing)
        return existing
    # Check every input file before writing anything: bad input fails with nothing
    # half-made. The checks stream and keep byte offsets, not rows (192,000 candidates
    # parsed into rows held ~280 MiB); planning reads the rows again a chunk at a time.
    inputs = check_inputs(spec)
    from crowdloop.stages.ranking import plan_rankings
    from crowdloop.stages.rating import plan_ratings

    campaign = Campaign(
        id=spec.name,
        spec=spec.model_dump(mode="json"),
        spec_version=SPEC_VERSION,
        spec_hash=digest,
        connector=spec.connector.name,
    )
    session.add(campaign)
    session.flush()
    if spec.demonstrations:
        plan_prompt_writing(session, spec)
    if inputs.candidates is not None:
        plan_comparisons(session, spec, inputs.candidates, inputs.golden)
    if inputs.exam:
        assert spec.preferences is not None and spec.preferences.golden_file is not None
        plan_exam(session, spec, read_golden(spec.preferences.golden_file, inputs.exam))
    if inputs.ranking:
        plan_rankings(session, spec, inputs.ranking)
    if inputs.rating:
        plan_ratings(session, spec, inputs.rating)
    return campaign


def plan_prompt_writing(session: Session, spec: CampaignSpec) -> None:
    demo = spec.demonstrations
    assert demo is not None
    rows = [
        write_prompt_item(spec, topic, slot, attempt=0)
        for topic in demo.topics
        for slot in range(demo.prompts_per_topic)
    ]
    insert_ignore(session, Item, rows, ["id"])


def write_prompt_item(
    spec: CampaignSpec,
    topic: str,
    slot: int,
    attempt: int,
    failed_writers: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """A prompt-writing task for one slot; a re-collection (`attempt` > 0) is kept from
    every writer whose text for this slot was rejected before."""
    demo = spec.demonstrations
    assert demo is not None
    item_id = stable_id("wp", spec.name, topic, slot, attempt)
    payload = WritePromptTask(instruction=demo.prompt_instruction, topic=topic)
    return _item_row(
        item_id,
        spec.name,
        Stage.PROMPTS,
        payload.model_dump(),
        overlap=1,
        subject_id=f"{topic}#{slot}",
        attempt=attempt,
        exclude_also=failed_writers,
    )


def write_response_item(
    spec: CampaignSpec,
    prompt: Prompt,
    attempt: int,
    author: str | None,
    failed_writers: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    demo = spec.demonstrations
    assert demo is not None
    item_id = stable_id("wr", spec.name, prompt.id, attempt)
    payload = WriteResponseTask(instruction=demo.response_instruction, prompt=prompt.text)
    # The prompt's author does not answer their own prompt; nor does anyone whose answer
    # to it was rejected.
    return _item_row(
        item_id,
        spec.name,
        Stage.RESPONSES,
        payload.model_dump(),
        overlap=1,
        subject_id=prompt.id,
        attempt=attempt,
        exclude_worker=author,
        exclude_also=failed_writers,
    )


def verify_item(
    spec: CampaignSpec,
    target: str,
    subject_id: str,
    prompt: str,
    text: str,
    author: str | None,
    topic: str = "",
    *,
    round_: int = 0,
    exclude_also: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """Verification of a written text, with what it was written for (the topic, the
    writing instruction, the prompt a response answers). `round_` > 0 is a second
    verification (its author was blocked later), asked of workers who did not judge it."""
    demo = spec.demonstrations
    assert demo is not None
    writing = demo.prompt_instruction if target == "prompt" else demo.response_instruction
    payload = VerifyTask(
        instruction=verify_instruction(demo.verify_instruction, writing, topic),
        target=target,
        prompt=prompt,
        text=text,
        topic=topic,
        writing_instruction=writing,
        rationale=demo.rationale,
    )
    parts: tuple[object, ...] = (
        (spec.name, subject_id) if round_ == 0 else (spec.name, subject_id, "again", round_)
    )
    return _item_row(
        stable_id("vf", *parts),
        spec.name,
        Stage.VERIFY,
        payload.model_dump(),
        overlap=demo.verification_overlap,
        subject_id=subject_id,
        exclude_worker=author,
        exclude_also=exclude_also,
        attempt=round_,
    )


def verify_instruction(instruction: str, writing: str, topic: str) -> str:
    """The verifier's instruction with what the writer was asked, so that every
    marketplace shows the context (each renders a task's instruction; few have a field
    for a topic): a text written for another topic or task can then be rejected."""
    if not topic:
        return instruction
    return f"{instruction}\n\nThe writer was asked: {writing}\nTopic: {topic}"


def golden_verify_items(
    spec: CampaignSpec,
    rows: list[GoldenVerificationRow],
    start: int,
    count: int,
    *,
    overlap: int | None = None,
    exclude_also: list[str] | tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """Golden verification instances `start .. start+count`, cycling through the rows, each
    asked of `overlap` workers (the verification overlap by default) other than
    `exclude_also`."""
    demo = spec.demonstrations
    assert demo is not None
    out = []
    for n in range(start, start + count):
        row = rows[n % len(rows)]
        writing = demo.prompt_instruction if row.target == "prompt" else demo.response_instruction
        payload = VerifyTask(
            instruction=verify_instruction(demo.verify_instruction, writing, row.topic),
            target=row.target,
            prompt=row.prompt,
            text=row.text,
            topic=row.topic,
            writing_instruction=writing,
            rationale=demo.rationale,
        )
        out.append(
            _item_row(
                stable_id("gv", spec.name, row.id, n),
                spec.name,
                Stage.VERIFY,
                payload.model_dump(),
                overlap=overlap or demo.verification_overlap,
                subject_id=row.id,
                exclude_also=exclude_also,
                golden_answer=row.verdict,
                group=f"golden-{row.id}",
            )
        )
    return out


def golden_count(real: int, share: float) -> int:
    """Golden items to mix with `real` ones so they make up `share` of the total."""
    if share <= 0 or real == 0:
        return 0
    # Exact rational arithmetic: 12 * 0.2 / 0.8 is 3.0000000000000004 in floats.
    exact = Fraction(str(share))
    return math.ceil(real * exact / (1 - exact))


class _CandidateChecks:
    """The cross-row checks of a candidates file, fed a row at a time: a repeated
    response id or a prompt id with two texts fails naming the line and field."""

    def __init__(self, src: Path) -> None:
        self.src = src
        self.response_line: dict[str, int] = {}
        # A digest of each prompt's text, not the text: the checks hold one entry per
        # prompt and per response for the whole file.
        self.prompt_digest: dict[str, bytes] = {}
        self.prompt_line: dict[str, int] = {}

    def see(self, lineno: int, row: CandidateRow) -> None:
        first = self.response_line.setdefault(row.response_id, lineno)
        if first != lineno:
            raise SpecError(
                f"{self.src}:{lineno}: field 'response_id': {row.response_id!r} already "
                f"appears on line {first}"
            )
        text = hashlib.blake2b(row.prompt.encode(), digest_size=16).digest()
        if self.prompt_digest.setdefault(row.prompt_id, text) != text:
            raise SpecError(
                f"{self.src}:{lineno}: field 'prompt': prompt_id {row.prompt_id!r} has another "
                f"text on line {self.prompt_line[row.prompt_id]}"
            )
        self.prompt_line.setdefault(row.prompt_id, lineno)


def index_candidates(
    numbered: list[tuple[int, CandidateRow]], src: Path
) -> tuple[dict[str, list[CandidateRow]], dict[str, str]]:
    """Candidates by prompt id, and each prompt's text, for inputs small enough to hold
    (a ranking's); checked as `scan_candidates` checks them."""
    checks = _CandidateChecks(src)
    by_prompt: dict[str, list[CandidateRow]] = defaultdict(list)
    prompt_text: dict[str, str] = {}
    for lineno, row in numbered:
        checks.see(lineno, row)
        prompt_text.setdefault(row.prompt_id, row.prompt)
        by_prompt[row.prompt_id].append(row)
    return by_prompt, prompt_text


@dataclass(frozen=True)
class CandidateIndex:
    """A checked candidates file as byte offsets: each prompt's candidate lines, in file
    order. Rows are read back a prompt at a time (`prompts`), never all at once."""

    src: Path
    offsets: dict[str, list[int]]

    def prompts(self) -> Iterator[tuple[str, list[CandidateRow]]]:
        """(prompt id, its candidates in file order), in prompt id order."""
        with self.src.open("rb") as fh:
            for pid in sorted(self.offsets):
                yield pid, [read_jsonl_at(fh, self.src, o, CandidateRow) for o in self.offsets[pid]]


def scan_candidates(src: Path) -> CandidateIndex:
    """Check a candidates file line by line, keeping each row's byte offset only."""
    checks = _CandidateChecks(src)
    offsets: dict[str, list[int]] = defaultdict(list)
    for lineno, offset, row in iter_jsonl(src, CandidateRow):
        checks.see(lineno, row)
        offsets[row.prompt_id].append(offset)
    return CandidateIndex(src, dict(offsets))


class GoldenRef(NamedTuple):
    """A checked golden pair, as what the exam split needs and where to read the row."""

    offset: int
    id: str
    answer: str


def scan_golden(prefs: PreferencesSpec) -> list[GoldenRef]:
    """Check the preferences golden file line by line (levels against a graded campaign's
    scale too), keeping each row's offset, id and answer."""
    src = prefs.golden_file
    if src is None:
        return []
    refs: list[GoldenRef] = []
    for lineno, offset, row in iter_jsonl(src, GoldenPairRow):
        graded = prefs.graded
        if graded is not None and row.level is not None and graded.rank(row.level) is None:
            raise SpecError(
                f"{src}:{lineno}: field 'level': {row.level!r} is not a level "
                f"of preferences.graded ({', '.join(graded.labels)})"
            )
        refs.append(GoldenRef(offset, row.id, row.answer))
    return refs


def read_golden(src: Path, refs: list[GoldenRef]) -> list[GoldenPairRow]:
    """The rows of a few golden refs (the exam's), in their order."""
    with src.open("rb") as fh:
        return [read_jsonl_at(fh, src, ref.offset, GoldenPairRow) for ref in refs]


@dataclass(frozen=True)
class CheckedInputs:
    """What `check_inputs` found: indexes of the preferences inputs (offsets, not rows),
    the exam's golden refs, and a ranking's inputs."""

    candidates: CandidateIndex | None = None
    golden: list[GoldenRef] = field(default_factory=list)
    exam: list[GoldenRef] = field(default_factory=list)
    ranking: RankingInputs | None = None
    rating: RatingInputs | None = None


def check_inputs(spec: CampaignSpec) -> CheckedInputs:
    """Read and check every input file the spec names, writing nothing: what
    `register_campaign` would refuse fails here, before anything starts. Every file is
    read a line at a time; what comes back holds offsets and ids, not rows."""
    out = CheckedInputs()
    if spec.preferences:
        prefs = spec.preferences
        index = scan_candidates(prefs.candidates_file)
        golden = scan_golden(prefs)
        if prefs.pairing.pairs_file:
            _listed_pairs(prefs.pairing.pairs_file, index)
        exam: list[GoldenRef] = []
        if spec.quality.exam is not None:
            exam, golden = split_exam_rows(spec, golden)
        out = CheckedInputs(candidates=index, golden=golden, exam=exam)
    if spec.demonstrations and spec.demonstrations.golden_file:
        # checked now so a bad golden file fails before any money is spent
        for _ in iter_jsonl(spec.demonstrations.golden_file, GoldenVerificationRow):
            pass
    if spec.ranking:
        from crowdloop.stages.ranking import ranking_inputs

        out = dataclasses.replace(out, ranking=ranking_inputs(spec.ranking))
    if spec.rating:
        from crowdloop.stages.rating import rating_inputs

        out = dataclasses.replace(out, rating=rating_inputs(spec.rating))
    return out


def check_campaign(path: Path) -> CampaignSpec:
    """Load a campaign file and check every input it names (nothing is written)."""
    spec = load_campaign(path)
    check_inputs(spec)
    return spec


# Response and item rows per insert while planning comparisons.
ITEM_CHUNK = 5_000


def _prompt_row(campaign_id: str, prompt_id: str, text: str) -> dict[str, Any]:
    # Plain dicts with every column of a Prompt / Response row: building the SQLModel
    # object to dump it cost ~25 µs a row, ~5 s for 192,000 candidates.
    return {
        "id": _prompt_key(campaign_id, prompt_id),
        "campaign_id": campaign_id,
        "text": text,
        "source": "file",
        "topic": None,
        "author": None,
        "origin_item": None,
        "verdict": "accept",
        "confidence": None,
        "check_failure": None,
    }


def _response_row(campaign_id: str, r: CandidateRow) -> dict[str, Any]:
    return {
        "id": _response_key(campaign_id, r.response_id),
        "campaign_id": campaign_id,
        "prompt_id": _prompt_key(campaign_id, r.prompt_id),
        "text": r.response,
        "source": "model",
        "model": r.model,
        "author": None,
        "origin_item": None,
        "verdict": "accept",
        "confidence": None,
        "check_failure": None,
    }


def insert_candidates(
    session: Session, campaign_id: str, prompt_text: dict[str, str], candidates: list[CandidateRow]
) -> None:
    """The Prompt and Response rows of candidates held in memory (a ranking's), as given:
    accepted, unverified; responses `ITEM_CHUNK` at a time."""
    prompts = [_prompt_row(campaign_id, pid, text) for pid, text in prompt_text.items()]
    insert_ignore(session, Prompt, prompts, ["id"])
    for start in range(0, len(candidates), ITEM_CHUNK):
        responses = [_response_row(campaign_id, r) for r in candidates[start : start + ITEM_CHUNK]]
        insert_ignore(session, Response, responses, ["id"])


def stream_candidates(session: Session, campaign_id: str, src: Path) -> None:
    """The Prompt and Response rows of a checked candidates file, read and inserted
    `ITEM_CHUNK` lines at a time: each prompt (in order of first appearance) before its
    responses (in file order), the order `insert_candidates` gives."""
    seen: set[str] = set()
    prompts: list[dict[str, Any]] = []
    responses: list[dict[str, Any]] = []

    def flush() -> None:
        insert_ignore(session, Prompt, prompts, ["id"])
        insert_ignore(session, Response, responses, ["id"])
        prompts.clear()
        responses.clear()

    for _, _, row in iter_jsonl(src, CandidateRow):
        if row.prompt_id not in seen:
            seen.add(row.prompt_id)
            prompts.append(_prompt_row(campaign_id, row.prompt_id, row.prompt))
        responses.append(_response_row(campaign_id, row))
        if len(responses) >= ITEM_CHUNK:
            flush()
    flush()


def plan_comparisons(
    session: Session,
    spec: CampaignSpec,
    index: CandidateIndex,
    golden: list[GoldenRef],
) -> None:
    prefs = spec.preferences
    assert prefs is not None
    stream_candidates(session, spec.name, index.src)

    first_overlap = prefs.dynamic_overlap.min_overlap if prefs.dynamic_overlap else prefs.overlap
    # Inserted a chunk at a time, in the same order: the whole campaign's item rows at once
    # held ~3.6 KB per item (1.2 GB at 10^6 judgments) before the first insert.
    items: list[dict[str, Any]] = []

    def add(row: dict[str, Any]) -> None:
        items.append(row)
        if len(items) >= ITEM_CHUNK:
            insert_items(session, items)
            items.clear()

    # Every comparison's payload is this one with its own prompt and texts: the same dict
    # `compare_task(...).model_dump()` gives (only prompt, left and right differ between
    # pairs; the opt-ins left out depend on the spec alone), without a model built and
    # dumped per item (~10 us of the ~70 a registered item costs at 10^6 judgments).
    blank = compare_task(prefs, "", "", "").model_dump()
    planned = 0
    for pid, a, b, prompt, left, right in pair_texts(spec, index):
        item_row = _item_row(
            compare_item_id(spec.name, pid, a, b),
            spec.name,
            Stage.COMPARE,
            {**blank, "prompt": prompt, "left": left, "right": right},
            overlap=first_overlap,
            subject_id=_prompt_key(spec.name, pid),
        )
        item_row["left_id"] = _response_key(spec.name, a)
        item_row["right_id"] = _response_key(spec.name, b)
        add(item_row)
        planned += 1
    if golden:
        assert prefs.golden_file is not None
        with prefs.golden_file.open("rb") as fh:
            for n in range(golden_count(planned, prefs.golden_share)):
                ref = golden[n % len(golden)]
                g = read_jsonl_at(fh, prefs.golden_file, ref.offset, GoldenPairRow)
                add(
                    _item_row(
                        stable_id("gc", spec.name, g.id, n),
                        spec.name,
                        Stage.COMPARE,
                        {**blank, "prompt": g.prompt, "left": g.left, "right": g.right},
                        overlap=prefs.overlap,
                        subject_id=g.id,
                        golden_answer=g.answer,
                        golden_level=golden_level(prefs, g),
                        group=f"golden-{g.id}",
                    )
                )
    insert_items(session, items)


def insert_items(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert a chunk of item rows in the order of their ids (SQLite's rowid order).

    The push publishes pending items in id order, 500 at a time, and moves each chunk's
    rows to pushed in the same transaction as its ledger intent. Item ids are hashes, so
    rows inserted in planning order put a chunk's 500 rows on ~500 different table and
    state-index pages, each rewritten into the WAL: ~39 us a row of CPU at ~10^5
    judgments, most of the push's database time. Sorted within each insert, a push chunk
    covers one narrow id range, a short run of adjacent rows in every inserted chunk
    (~7 us a row measured on the same rows). The set of rows, their ids and every value
    are the same; only where SQLite stores them changes. The sort is stable, so the first
    of two rows with one id is still the one kept."""
    insert_ignore(session, Item, sorted(rows, key=lambda row: row["id"]), ["id"])


def compare_task(prefs: PreferencesSpec, prompt: str, left: str, right: str) -> CompareTask:
    """A comparison as workers see it: plain A / B / tie, or graded on the campaign's scale."""
    graded = prefs.graded
    return CompareTask(
        instruction=prefs.instruction,
        prompt=prompt,
        left=left,
        right=right,
        scale=graded.labels if graded else (),
        unsure=graded.unsure if graded else True,
        rationale=prefs.rationale,
    )


def golden_level(prefs: PreferencesSpec, row: GoldenPairRow) -> int | None:
    """A golden pair's level on a graded campaign (checked by `scan_golden`)."""
    if prefs.graded is None or row.level is None:
        return None
    return prefs.graded.rank(row.level)


def split_exam_rows(
    spec: CampaignSpec, golden: list[GoldenRef]
) -> tuple[list[GoldenRef], list[GoldenRef]]:
    """The exam's golden pairs, and the golden pairs left for production.

    Exam pairs are clear-cut (answer left or right, never tie), alternate between the two
    answers (a worker who always clicks one side fails), and are taken in a hash order of
    their ids, so the file order does not decide. They leave the production pool: a worker
    who met a pair in the exam would meet it again knowing it, which is no evidence.
    """
    exam = spec.quality.exam
    prefs = spec.preferences
    assert exam is not None and prefs is not None  # the spec validates both
    src = prefs.golden_file
    sides = {
        side: sorted(
            (row for row in golden if row.answer == side),
            key=lambda row: digest(spec.name, "exam", row.id),
        )
        for side in ("left", "right")
    }
    clear = len(sides["left"]) + len(sides["right"])
    if clear < exam.items:
        raise SpecError(
            f"{src}: field 'quality.exam.items': the exam needs {exam.items} clear-cut "
            f"(left/right) golden pairs; the file has {clear}"
        )
    chosen: list[GoldenRef] = []
    while len(chosen) < exam.items:
        side = "left" if len(chosen) % 2 == 0 else "right"
        if not sides[side]:
            side = "right" if side == "left" else "left"
        chosen.append(sides[side].pop(0))
    taken = {row.id for row in chosen}
    rest = [row for row in golden if row.id not in taken]
    if not rest and prefs.golden_share > 0:
        raise SpecError(
            f"{src}: field 'quality.exam.items': the exam takes all {len(golden)} golden "
            "pairs and leaves none for production; add rows or lower the number"
        )
    return chosen, rest


def plan_exam(session: Session, spec: CampaignSpec, rows: list[GoldenPairRow]) -> None:
    """One exam item per exam pair, asked of up to `takers` workers (a group per pair)."""
    prefs, exam = spec.preferences, spec.quality.exam
    assert prefs is not None and exam is not None
    items = [
        _item_row(
            stable_id("ex", spec.name, row.id),
            spec.name,
            Stage.EXAM,
            compare_task(prefs, row.prompt, row.left, row.right).model_dump(),
            overlap=exam.takers,
            subject_id=row.id,
            golden_answer=row.answer,
            golden_level=golden_level(prefs, row),
            group=f"exam-{row.id}",
        )
        for row in rows
    ]
    insert_ignore(session, Item, items, ["id"])


def real_pairs(
    spec: CampaignSpec, index: CandidateIndex
) -> Iterator[tuple[str, str, str, CompareTask]]:
    """Every real pair the pairing design makes, prompt by prompt: (prompt id, left
    response id, right response id, the task), sides drawn by the campaign's seeded coin.
    Registration creates these items (from `pair_texts`); the estimate counts and prices
    them."""
    prefs = spec.preferences
    assert prefs is not None
    for pid, a, b, prompt, left, right in pair_texts(spec, index):
        yield pid, a, b, compare_task(prefs, prompt, left, right)


def pair_texts(
    spec: CampaignSpec, index: CandidateIndex
) -> Iterator[tuple[str, str, str, str, str, str]]:
    """`real_pairs` as texts: (prompt id, left response id, right response id, prompt,
    left text, right text)."""
    prefs = spec.preferences
    assert prefs is not None
    listed = _listed_pairs(prefs.pairing.pairs_file, index) if prefs.pairing.pairs_file else {}
    for pid, rows in index.prompts():
        pairs = (
            listed.get(pid, [])
            if prefs.pairing.design == "listed"
            else design_pairs(
                [r.response_id for r in rows],
                design=prefs.pairing.design,
                per_candidate=prefs.pairing.pairs_per_candidate,
                seed=f"{spec.name}/{prefs.pairing.seed}/{pid}",
            )
        )
        text = {r.response_id: r.response for r in rows}
        for a, b in pairs:
            if coin(spec.name, spec.seed, pid, a, b):
                a, b = b, a
            yield pid, a, b, rows[0].prompt, text[a], text[b]


def _listed_pairs(path: Path, index: CandidateIndex) -> dict[str, list[tuple[str, str]]]:
    """The pairs of a `listed` design, checked against the candidates file."""
    known = {pid: {r.response_id for r in rows} for pid, rows in index.prompts()}
    out: dict[str, list[tuple[str, str]]] = defaultdict(list)
    seen: set[tuple[str, str, str]] = set()
    for lineno, _, row in iter_jsonl(path, ListedPairRow):
        for field_name, rid in (("a", row.a), ("b", row.b)):
            if rid not in known.get(row.prompt_id, ()):
                raise SpecError(
                    f"{path}:{lineno}: field {field_name!r}: response {rid!r} is not a "
                    f"candidate of prompt {row.prompt_id!r}"
                )
        if row.a == row.b:
            raise SpecError(
                f"{path}:{lineno}: field 'b': a response cannot be compared with itself"
            )
        a, b = sorted((row.a, row.b))
        if (row.prompt_id, a, b) not in seen:
            seen.add((row.prompt_id, a, b))
            out[row.prompt_id].append((a, b))
    return out


def design_pairs(
    ids: list[str], *, design: str, per_candidate: int, seed: str
) -> list[tuple[str, str]]:
    """Pairs to compare among one prompt's candidates.

    `all`: every pair. `sampled`: a random cycle (so the comparison graph is connected and
    Bradley-Terry can rank everything) plus random extra pairs until each candidate sits in
    about `per_candidate` comparisons.
    """
    ids = sorted(ids)
    every = list(itertools.combinations(ids, 2))
    if design == "all" or len(ids) <= 3 or per_candidate >= len(ids) - 1:
        return every
    rng = random.Random(seed)
    order = ids[:]
    rng.shuffle(order)
    chosen = {tuple(sorted((order[i], order[(i + 1) % len(order)]))) for i in range(len(order))}
    target = math.ceil(len(ids) * per_candidate / 2)
    rest = [p for p in every if p not in chosen]
    rng.shuffle(rest)
    for pair in rest:
        if len(chosen) >= target:
            break
        chosen.add(pair)
    return sorted((a, b) for a, b in chosen)


# Planning asks for the same row ids again and again: a prompt's id for each of its
# responses and pairs, a response's id for each pair it is in (~1.1 million of ~1.9
# million hashes while registering a 10^6-judgment campaign, ~2 us each). Rows come a
# prompt at a time, so a small cache holds every repeat.
@functools.lru_cache(maxsize=256)
def _prompt_key(campaign: str, prompt_id: str) -> str:
    return stable_id("p", campaign, prompt_id)


@functools.lru_cache(maxsize=256)
def _response_key(campaign: str, response_id: str) -> str:
    return stable_id("r", campaign, response_id)


def _item_row(
    item_id: str,
    campaign_id: str,
    stage: Stage,
    payload: dict[str, Any],
    *,
    overlap: int,
    subject_id: str | None = None,
    attempt: int = 0,
    exclude_worker: str | None = None,
    exclude_also: list[str] | tuple[str, ...] = (),
    golden_answer: str | None = None,
    golden_level: int | None = None,
    group: str | None = None,
) -> dict[str, Any]:
    return {
        "id": item_id,
        "campaign_id": campaign_id,
        "stage": stage.value,
        "kind": payload["kind"],
        "payload": payload,
        "state": ItemState.PENDING,
        "overlap": overlap,
        "subject_id": subject_id,
        "left_id": None,
        "right_id": None,
        "attempt": attempt,
        "pushes": 0,
        "is_golden": golden_answer is not None,
        "golden_answer": golden_answer,
        "golden_level": golden_level,
        "group": group or item_id,
        "exclude_worker": exclude_worker,
        "exclude_also": sorted(set(exclude_also) - {exclude_worker}),
    }


def load_spec(session: Session, campaign_id: str) -> CampaignSpec:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise LookupError(f"no campaign named {campaign_id!r}")
    return stored_spec(campaign)


def stored_spec(campaign: Campaign) -> CampaignSpec:
    """A campaign row's spec, upgraded from the version it was stored in."""
    return read_stored_spec(campaign.id, campaign.spec, campaign.spec_version)


def open_campaigns(session: Session) -> list[str]:
    from crowdloop.models.tables import CampaignStatus

    stmt = (
        select(Campaign.id)
        .where(Campaign.status == CampaignStatus.RUNNING)
        .order_by(col(Campaign.id))
    )
    return list(session.exec(stmt).all())
