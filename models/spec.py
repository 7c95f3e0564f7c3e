"""Campaign specification (a YAML file) and the JSONL inputs it names.

Every loader reports bad input as `SpecError` naming the file, the line and the field,
so an operator can fix the file without reading a traceback.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO, Literal, NoReturn, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from crowdloop.models.domain import Money
from crowdloop.models.ranking_spec import RankingSpec
from crowdloop.models.rating_spec import RatingSpec

M = TypeVar("M", bound=BaseModel)


class SpecError(ValueError):
    """A campaign file or input file is malformed; the message names file, line and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- JSONL inputs -------------------------------------------------------------------------


class CandidateRow(_Strict):
    """One model response to compare: a line of the candidates JSONL file."""

    prompt_id: str = Field(min_length=1)
    prompt: str = Field(min_length=1)
    response_id: str = Field(min_length=1)
    # An empty answer is a real (bad) candidate: models do return nothing sometimes.
    response: str
    model: str = "unknown"


class GoldenPairRow(_Strict):
    """A control comparison with a known, clear-cut answer."""

    id: str = Field(min_length=1)
    prompt: str = Field(min_length=1)
    left: str = Field(min_length=1)
    right: str = Field(min_length=1)
    answer: Literal["left", "right", "tie"]
    # On a graded campaign: how much better the answer is, a label of `preferences.graded`
    # (a worker passes within one step of it); ignored on a plain campaign.
    level: str | None = Field(default=None, min_length=1)
    reason: str = ""

    @model_validator(mode="after")
    def _level_has_side(self) -> GoldenPairRow:
        if self.level is not None and self.answer == "tie":
            raise ValueError("a level goes with answer left or right, not with tie")
        return self


class GoldenVerificationRow(_Strict):
    """A control verification task: a text whose verdict is known."""

    id: str = Field(min_length=1)
    target: Literal["prompt", "response"]
    prompt: str = ""
    text: str = Field(min_length=1)
    verdict: Literal["accept", "reject"]
    # The topic the text was written for, shown to verifiers (an off-topic control item
    # names a topic its text is not about).
    topic: str = ""
    reason: str = ""


def _format_loc(loc: Sequence[int | str]) -> str:
    return ".".join(str(p) for p in loc) or "(root)"


# Text from inputs ends up in marketplace tasks, the database (PostgreSQL refuses NUL),
# reports and the Prefect UI: C0 controls other than tab/newline/CR, DEL, C1 controls and
# lone surrogates (JSON's "\ud800") are refused where they are read.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
# JSON escapes that may decode to one of those: \b, \f, \u0000-\u001f, \u0070-\u009f and
# surrogates (a superset: a false alarm only costs the full walk in `_bad_text`).
_CONTROL_ESCAPE = re.compile(r"\\(?:[bf]|u(?:00[017-9]|[dD][89a-fA-F]))")


def _bad_text(
    value: Any, loc: tuple[int | str, ...] = ()
) -> tuple[tuple[int | str, ...], str] | None:
    """The location and character of the first control character in a loaded document."""
    if isinstance(value, str):
        m = _CONTROL.search(value)
        return (loc, m.group()) if m else None
    if isinstance(value, dict):
        for k, v in value.items():
            found = _bad_text(k, loc) if isinstance(k, str) else None
            found = found or _bad_text(v, (*loc, k))
            if found:
                return found
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = _bad_text(v, (*loc, i))
            if found:
                return found
    return None


def _control_message(char: str) -> str:
    return f"contains the control character U+{ord(char):04X}; remove it"


_MARK = "\ue000"  # stands in for undecodable bytes while locating the field they are in


def _decode(path: Path, raw: bytes, first_line: int = 1) -> str:
    """UTF-8 text, or a SpecError naming the line, and the field where it can be found,
    of the first byte that is not UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = first_line + raw.count(b"\n", 0, exc.start)
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        field = _field_of_bad_bytes(raw, exc.start)
        where = f"{path}:{line}: " + (f"field {_format_loc(field)!r}: " if field else "")
        raise SpecError(
            f"{where}not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {column}); "
            "save the file as UTF-8"
        ) from None


def _field_of_bad_bytes(raw: bytes, start: int) -> tuple[int | str, ...] | None:
    """The location of the value holding the first undecodable byte (JSON or YAML)."""
    head = raw[:start].decode("utf-8", errors="replace")
    text = head + _MARK + raw[start + 1 :].decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
    except ValueError:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            return None
    found = _find_mark(data, ())
    return found


def _find_mark(value: Any, loc: tuple[int | str, ...]) -> tuple[int | str, ...] | None:
    if isinstance(value, str):
        return loc if _MARK in value else None
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for k, v in items:
        if isinstance(k, str) and _MARK in k:
            return loc
        found = _find_mark(v, (*loc, k))
        if found is not None:
            return found
    return None


def load_jsonl(path: Path, model: type[M]) -> list[M]:
    """Read a JSONL file into `model` rows; the first bad line raises naming line and field."""
    return [row for _, _, row in iter_jsonl(path, model)]


def load_jsonl_lines(path: Path, model: type[M]) -> list[tuple[int, M]]:
    """Like `load_jsonl`, keeping each row's line number for later cross-row checks."""
    return [(lineno, row) for lineno, _, row in iter_jsonl(path, model)]


def iter_jsonl(path: Path, model: type[M]) -> Iterator[tuple[int, int, M]]:
    """(line number, byte offset, row) of every row, read one line at a time: the one way
    every input file is read, whether its rows are kept or not. The first bad line raises
    naming line and field; a file without rows raises once it has been read."""
    if not path.is_file():
        raise SpecError(f"{path}: file not found")
    found = False
    offset = 0
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            start, offset = offset, offset + len(raw)
            row = _parse_line(path, lineno, raw, model)
            if row is not None:
                found = True
                yield lineno, start, row
    if not found:
        raise SpecError(f"{path}: no rows")


def read_jsonl_at(fh: BinaryIO, path: Path, offset: int, model: type[M]) -> M:
    """The row at byte `offset` of an open JSONL file that `iter_jsonl` read before (an
    index keeps offsets, not rows); a file changed since fails naming the offset."""
    fh.seek(offset)
    row = _parse_line(path, 0, fh.readline(), model)
    if row is None:
        raise SpecError(f"{path}: changed while it was read (no row at byte {offset})")
    return row


def _parse_line(path: Path, lineno: int, raw: bytes, model: type[M]) -> M | None:
    """One line as a `model` row (None for a blank line), or a SpecError naming line and
    field."""
    line = _decode(path, raw, lineno)
    if not line.strip():
        return None
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise SpecError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
    # Walking every decoded value for control characters was the largest cost of reading
    # an input (22% of registering 19,200 candidates): only a line that holds one raw, or
    # an escape that can decode to one, is walked.
    bad = _bad_text(data) if _CONTROL.search(line) or _CONTROL_ESCAPE.search(line) else None
    if bad:
        raise SpecError(
            f"{path}:{lineno}: field {_format_loc(bad[0])!r}: {_control_message(bad[1])}"
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise SpecError(
            f"{path}:{lineno}: field {_format_loc(first['loc'])!r}: {first['msg']}"
        ) from None


# --- the campaign file ----------------------------------------------------------------------


class ConnectorSpec(_Strict):
    name: str = "simulator"
    credentials_block: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class ExamSpec(_Strict):
    """Gate workers: production comparisons go only to workers who passed an exam.

    The exam is `items` clear-cut (left/right) pairs of the preferences golden file, graded
    on our side; `min_correct` of them right passes. Those pairs leave the production golden
    pool. Measured (exact binomial, workers as the simulator models them): 9 of 12 passes
    98.8% of honest workers (accuracy 0.92) and 0.4% of random clickers; see
    docs/golden-sets.md.
    """

    items: int = Field(default=12, ge=1, le=100)
    min_correct: int = Field(default=9, ge=1)
    # The overlap of each exam item: how many workers may take the exam (100 at most).
    takers: int = Field(default=100, ge=1, le=100)
    # Production starts once this many workers passed (more keep qualifying meanwhile);
    # if they have not after `wait_s`, the run stops with an error and a rerun waits on.
    min_passers: int = Field(default=10, ge=1)
    wait_s: float = Field(default=3600.0, gt=0)
    # Paid per exam answer, pass or fail; null: the preferences reward.
    reward: Money | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ExamSpec:
        if self.min_correct > self.items:
            _fail(("min_correct",), f"must not exceed items ({self.items})", self.min_correct)
        if self.min_passers > self.takers:
            _fail(
                ("min_passers",),
                f"must not exceed takers ({self.takers}): production would never start",
                self.min_passers,
            )
        return self


class QualitySpec(_Strict):
    prior_correct: float = Field(default=2.0, gt=0)
    prior_incorrect: float = Field(default=1.0, gt=0)
    min_golden: int = Field(default=4, ge=1)
    min_accuracy: float = Field(default=0.7, gt=0, lt=1)
    block_confidence: float = Field(default=0.8, gt=0.5, lt=1)
    warn_confidence: float = Field(default=0.6, gt=0, lt=1)
    # Block when the posterior that a worker's comparisons do not follow the content
    # (all of them, or a recent run) reaches this, on at least CrowdPolicy.min_answers
    # answers; see crowdloop.quality.CrowdPolicy. Null: computed, reported and used to
    # retire ambiguous golden items, never acted on. On by default since the ten-answer
    # floor, golden ties read as mistakes and cheaper replacement of excluded answers
    # (docs/quality-bench.md, "Blocking on the crowd posterior by default").
    blind_confidence: float | None = Field(default=0.95, gt=0.5, lt=1)
    # What happens to a worker the policy fails: blocked on the marketplace and answers
    # excluded; answers excluded only; or only a warning in the report.
    on_fail: Literal["block", "exclude", "warn"] = "block"
    reject_untrusted_work: bool = True
    # Review a worker's comparison submissions only once the crowd assessment has cleared
    # them (posterior of careless answering under quality_check.CLEARED_BLIND) or they are
    # blocked; until then they stay unreviewed, so a worker blocked in a later round has
    # that work rejected too (with reject_untrusted_work), where it was accepted round by
    # round before. What is still held after the last round is reviewed then (the flow's
    # review-held step), so nobody waits for the marketplace's auto-accept. Why: answers
    # of workers blocked later were 4-20% of plain overlap 3's cost on the bench's crowds
    # with bad workers, paid because review came before the evidence. Measured
    # (docs/quality-bench.md, cost10e, seeds 0-2): every verdict and block the same, cost down 3-19
    # points on 9 of 11 crowds (spammy 107% -> 87%).
    hold_unjudged_work: bool = True
    # The golden rule judges a worker whose comparisons the crowd assessment finds turned
    # careless at a change point (`quality_check.golden_since`) on the golden answers from
    # that change point on as well as on the whole record; the veto (the crowd posterior
    # under its base rate) still applies, and the answers from the change point on are
    # excluded. Why: a sleeper's careful exam answers dilute the record (15 of 21 right:
    # P(below 0.7) = 0.42; the 3 of 9 after the turn: 0.93). Opt-in: on the bench it
    # blocked no honest worker and left the default configuration's runs unchanged; under
    # the exam the sleepers' careless verdict share came down 0.125 -> 0.096 (3 runs x 2
    # seeds), within the exam runs' own run-to-run spread (docs/quality-bench.md, drift10c).
    golden_from_drift: bool = False
    # Exclude (never block) a worker's answers from the exam's end on, at this posterior
    # that they turned careless there (`crowdloop.quality.CrowdPolicy.late_confidence`: a
    # change point with as few as 3 answers after it, prior mass on the end of a worker's
    # leading run of golden answers); the pairs are bought again, the worker keeps working
    # and is judged again on what comes next. Without an exam nothing is excluded on it.
    # Null: off. Acted on only with blind_confidence set and on_fail not "warn". Why: a
    # sleeper passes the exam while careful and gives 5-6 careless answers, too few to block
    # on; a wrong exclusion costs a re-ask, not a worker. Measured (docs/quality-bench.md, sleep12).
    exclude_late_confidence: float | None = Field(default=0.5, gt=0, lt=1)
    # Block a worker whose answers turned content-blind at a late change point anywhere
    # (`crowdloop.quality.CrowdPolicy.late_block_confidence`: the posterior ``p_late``, with
    # at least `block_late_min_answers` answers from the change point on and
    # CrowdPolicy.min_answers in all); the answers from the change point on are excluded,
    # the careful start's kept; for a worker with a known boundary (an exam's end), at that
    # boundary only. Null: off. Acted on only with blind_confidence set. Why: sleepers give
    # too few careless answers for the whole-record posterior, but 6+ after a late change
    # point at 0.85 convict some (bench, block13: sleepers blocked 3 -> 6 of 36 without an
    # exam, no honest worker; the highest honest p_late offline 0.61).
    block_late_confidence: float | None = Field(default=0.85, gt=0.5, lt=1)
    block_late_min_answers: int = Field(default=6, ge=1)
    # The late block at the exam's end too (the late exclusion acts there already). Off:
    # measured under the exam, more sleepers blocked (42 of 108 against main's 25 of 180)
    # and their careless share of the verdicts no lower (5.5% against 4.2%;
    # docs/quality-bench.md, block13).
    block_late_at_exam: bool = False
    # Block at this lower crowd posterior (blind_confidence's) when the worker's golden
    # record also fails the warning bar (P(below min_accuracy) >= warn_confidence, retired
    # golden items left out, no min_golden wall): both kinds of evidence against the
    # worker, neither enough alone (`crowdloop.quality.CrowdPolicy.golden_blind_confidence`).
    # Null: off. Acted on only with blind_confidence set. Why: random clickers and
    # colluders short of min_golden or of the golden rule's bar, at posteriors of 0.8-0.95
    # (bench, block13: bad workers blocked 90 -> 105 of 164 on six crowds with the late
    # block, honest 3 -> 3, all of them golden-rule blocks on the ambiguous-golden crowd;
    # offline, the highest honest posterior with a golden record at the warning bar 0.60).
    golden_blind_confidence: float | None = Field(default=0.8, gt=0.5, lt=1)
    # Probation after the exam: a worker's comparisons from the exam's end on count in the
    # verdicts only once they show the worker careful: at least 3 of them, and the
    # posterior that the worker turned careless after the exam, under an even prior (the
    # evidence of the answers alone, `crowdloop.quality.CrowdPolicy.probation_clear`),
    # under this. Until then they are held (excluded, reason "on probation since ...",
    # their review deferred) and dynamic overlap buys the pairs from others; once the
    # worker clears, the held answers count again; what is still held at the end stays out
    # of the verdicts (and is paid). Never a block. Without an exam nothing is held (no
    # worker starts with a run of 8+ golden answers). Null: off. Acted on only with
    # blind_confidence set and on_fail not "warn". Why: sleepers pass the exam while
    # careful, and their careless answers after it reached the verdicts whenever the
    # crowd's learned share of late turns was low or the evidence was thin
    # (docs/quality-bench.md, exam14).
    exam_probation: float | None = Field(default=0.1, gt=0, lt=1)
    max_requeue_rounds: int = Field(default=3, ge=0)
    # Off by default; see ExamSpec.
    exam: ExamSpec | None = None


class ExportSpec(_Strict):
    path: Path


class TextRules(_Strict):
    """Checks a written text must pass before it is sent to verifiers (crowdloop/textcheck.py);
    a text that fails is rejected and written again by someone else, no verifier paid."""

    min_chars: int = Field(default=1, ge=1)
    max_chars: int | None = Field(default=None, ge=1)
    min_words: int = Field(default=1, ge=1)
    min_lines: int = Field(default=1, ge=1)
    # A regular expression (multiline) the text must contain, e.g. "^\\s*1[.)]" for a list.
    pattern: str | None = None

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return v

    @model_validator(mode="after")
    def _ordered(self) -> TextRules:
        if self.max_chars is not None and self.max_chars < self.min_chars:
            raise ValueError("max_chars must not be below min_chars")
        return self


class TextChecks(_Strict):
    prompt: TextRules = TextRules()
    response: TextRules = TextRules()
    # Reject a text that is the same as, or (Jaccard similarity of character shingles at
    # least `near_duplicate`) nearly the same as, a text written before, in this campaign
    # or an earlier one in the same database. null: exact copies only.
    near_duplicate: float | None = Field(default=0.7, gt=0, le=1)
    duplicates: bool = True
    # Reject a prompt that names another of the campaign's topics and not its own
    # (`crowdloop.textcheck.topic_failure`), and a list answer sharing two more entries
    # with another topic's answers than with its own topic's (`TopicEntries`); either
    # counts against its writer like a broken rule.
    off_topic: bool = True


class SFTExportSpec(ExportSpec):
    """Which accepted demonstrations reach the SFT file."""

    # Verification confidence (the verdict's posterior) a prompt and its response need.
    min_confidence: float = Field(default=0.7, ge=0, le=1)
    # Texts accepted before their author was blocked: written to the file anyway (keep),
    # left out (drop), or verified again by other workers and exported if accepted again
    # (reverify; the campaign waits for those verdicts).
    blocked_authors: Literal["drop", "reverify", "keep"] = "reverify"


class DemonstrationsSpec(_Strict):
    topics: list[str] = Field(min_length=1)
    prompts_per_topic: int = Field(default=1, ge=1)
    prompt_instruction: str = (
        "Write a request asking an assistant for a top-5 list about the topic."
    )
    response_instruction: str = "Answer the request with a numbered top-5 list."
    verify_instruction: str = (
        "Is this text a good, on-topic answer to the request? Accept or reject."
    )
    verification_overlap: int = Field(default=3, ge=1, le=15)
    # A verdict less sure than this goes to two more verifiers, up to
    # `max_verification_overlap` (equal to verification_overlap: never).
    verify_target_confidence: float = Field(default=0.97, gt=0.5, le=1)
    max_verification_overlap: int = Field(default=5, ge=1, le=15)
    max_attempts: int = Field(default=3, ge=1, le=10)
    golden_file: Path | None = None
    golden_share: float = Field(default=0.1, ge=0, lt=1)
    # On top of `golden_share`: golden verifications asked only of verifiers (workers who
    # verified a real text) with fewer golden answers than this, while real verification
    # is open, so every verifier is assessed within their first answers (0: none).
    golden_per_verifier: int = Field(default=3, ge=0, le=20)
    # A verifier whose answers look content-blind (accept everything, reject nearly
    # everything, random; `crowdloop.verifier_quality`) with this posterior is untrusted
    # (`quality.on_fail`); None: computed and reported, never acted on.
    verifier_blind_confidence: float | None = Field(default=0.9, gt=0.5, lt=1)
    # A writer with this many texts the checks rejected for certain (a broken rule, their
    # own earlier text again; not a copy of someone else's) is untrusted
    # (`quality.on_fail`): at the demo's size nobody writes the four judged texts the Beta
    # assessment needs. None: never.
    block_after_check_failures: int | None = Field(default=2, ge=1)
    # weighted_vote: each verifier's accept/reject accuracy learned with a crowd-pooled
    # prior, golden items at their known verdict; it does not overturn clear votes on
    # sparse data as Dawid-Skene did (bench/bench_demonstrations.py).
    aggregation: Literal["weighted_vote", "dawid_skene", "majority_vote"] = "weighted_vote"
    reward: Money = Money(amount=Decimal("0.10"))
    verify_reward: Money = Money(amount=Decimal("0.02"))
    checks: TextChecks = TextChecks()
    # A writer's record counts only verdicts at least this confident (and failed checks).
    trusted_confidence: float = Field(default=0.8, ge=0.5, le=1)
    export: SFTExportSpec
    # Offer verifiers an optional free-text rationale beside each verdict.
    rationale: bool = False


class ListedPairRow(_Strict):
    """One pair to compare, for `pairing.design: listed` (response ids of the candidates file)."""

    prompt_id: str = Field(min_length=1)
    a: str = Field(min_length=1)
    b: str = Field(min_length=1)


class PairingSpec(_Strict):
    # all: every pair per prompt; sampled: a connected random design; listed: exactly the
    # pairs in `pairs_file` (e.g. to replay or extend an earlier study).
    design: Literal["all", "sampled", "listed"] = "all"
    # For the sampled design: comparisons per candidate (a connected design is guaranteed).
    pairs_per_candidate: int = Field(default=2, ge=1)
    pairs_file: Path | None = None
    seed: int = 0

    @model_validator(mode="after")
    def _listed_needs_file(self) -> PairingSpec:
        if (self.design == "listed") != (self.pairs_file is not None):
            raise ValueError("'pairs_file' goes with design 'listed', and only with it")
        return self


class DynamicOverlapSpec(_Strict):
    """Ask each pair `min_overlap` times, then more only where the verdict is uncertain."""

    min_overlap: int = Field(default=1, ge=1, le=15)
    max_overlap: int = Field(default=4, ge=1, le=15)
    # Ask again while the pair verdict's confidence is below this.
    target_confidence: float = Field(default=0.8, gt=0.5, lt=1)
    # Stop on pairs their trusted answers settle (equal, or unanimous on 3+ answers:
    # preferences.settled_pairs).
    settle_pairs: bool = True
    # With settle_pairs, also stop on a pair hard for careful workers: three or more
    # trusted answers, every one from a worker the crowd assessment has cleared, on both
    # sides (preferences.settled_pairs). On by default with min_answer_value (the two
    # together: the bar on 8 of the bench's 11 crowds against 6, bad workers blocked 72% ->
    # 72%; docs/quality-bench.md, cost10f).
    settle_hard: bool = True
    # Ask again while a verdict resting on a single trusted answer is below this (null:
    # only target_confidence). Settled pairs alone cost the end-to-end dynamic-overlap test
    # (typical crowd, seeds 8-10) 1.3 points: its extra mistakes were mostly one-answer
    # verdicts at confidence 0.8-0.9, 8% of them wrong against 3% with two answers. 0.85:
    # 0.9 was more accurate still but over the bench's cost bar (docs/quality-bench.md,
    # "One answer is not settled (cost10c)").
    single_answer_confidence: float | None = Field(default=0.85, gt=0.5, lt=1)
    # Scale single_answer_confidence by the crowd's reliability r (its mean attentiveness
    # over the trusted answers, worker-aware model): the target used is 1 - (1 - t) / r^2.
    # Why: one more answer is worth about r^2 of an attentive worker's (its Fisher
    # information about the pair), so a reliable crowd (an in-house team) buys second
    # answers on one-answer verdicts a careless crowd's next answer would hardly improve
    # (docs/quality-bench.md, cost10f).
    single_answer_by_reliability: bool = False
    # Ask again about a pair with two or more trusted answers only while one more answer is
    # expected to raise P(its verdict is right) by at least this much (a Laplace posterior
    # of the scores: preferences.answer_values), instead of while its confidence is under
    # target_confidence (null: the confidence rule for every pair). 0.004, measured: on
    # logged bench campaigns the extensions it stops had gained nothing, and it cut 2-7
    # points of cost on every crowd (docs/quality-bench.md, "The value of one more answer
    # (cost10d)"). Off before cost10f: it blocked fewer bad workers then (70% -> 66% with
    # block10's model, before the review hold); with the hold and settle_hard, on the bench
    # (seeds 0-2) it blocks 174 of 243 against main's 176 and holds issue 10's bar on
    # spammy and hard too (docs/quality-bench.md, cost10f). A verdict on one answer keeps
    # the confidence targets either way (the posterior is overconfident there).
    min_answer_value: float | None = Field(default=0.004, gt=0, lt=1)
    # Which pairs min_answer_value may stop: "any" pair with two or more trusted answers, or
    # only those whose trusted answers all come from workers the crowd assessment has
    # cleared ("cleared": posterior of careless answering under
    # quality_check.CLEARED_BLIND). Why: a pair's answers are evidence about its answerers
    # as well as about its verdict (the assessment grades a worker on the verdicts of the
    # pairs they answered), and stopping pairs answered by workers still unjudged blocked
    # fewer bad workers (docs/quality-bench.md, cost10d: 70% -> 66%). A pair with an
    # unjudged answerer keeps target_confidence (docs/quality-bench.md, cost10e).
    # "rebought": only pairs with an answer a block excluded (the re-asks that replace a
    # blocked worker's answers; every other pair keeps target_confidence).
    answer_value_pairs: Literal["any", "cleared", "rebought"] = "any"
    # Ask again about a pair whose verdict is a tie (P(left better) within
    # preferences.TIE_BAND of 1/2) while the crowd does not call it equal (ties under two
    # thirds of its weighted votes), whatever min_answer_value and settle_hard say (up to
    # max_overlap). Why: a tie verdict on a pair with a better side is as wrong as the
    # other side; on the bench's hard and ambiguous-golden crowds a quarter of the wrong
    # verdicts were such ties (47 of 196, main, seeds 0-2), mostly on pairs careful
    # workers split on, which settle_hard stopped (docs/quality-bench.md, cost13).
    resolve_ties: bool = True
    # An allowance of answers on real pairs beyond min_overlap, per real pair: paid
    # answers (excluded ones included, golden ones not) plus those still owed on pairs out
    # on the marketplace, less min_overlap a pair, spent where one more answer is worth
    # the most (its `answer_value`, preferences.answer_values;
    # preferences.within_allowance).
    # `fill_extra`: when the rules above ask nothing more, the pairs not settled and under
    # max_overlap are asked once more, highest value first, until the answers reach
    # min_overlap + this many a pair (null: never). Why: a reliable crowd stops early on
    # its own evidence (the bench's in-house team at 63% of plain overlap 3's cost, 0.6
    # points under its accuracy, with wrong one-answer verdicts at confidence 0.85-0.99);
    # 1 + 0.8 = 1.8 answers a pair spends its headroom (76%) and leaves crowds that
    # already spend more alone (docs/quality-bench.md, cost13).
    fill_extra: float | None = Field(default=0.8, ge=0, le=15)
    # `cap_extra`: the rules' asks are cut to what keeps the answers under min_overlap +
    # this many a pair, the highest value first; a pair with an excluded answer, or with
    # no trusted answer, is never cut (the re-asks that replace a blocked worker's answers: cut too,
    # the spammy crowd blocked 35 of 47 bad workers against 40 and lost 2.1 points). Null:
    # no cap. Why: top-ups of pairs near 50/50 for everyone put the ambiguous-golden crowd
    # at 82% of plain overlap 3's cost; 1 + 0.9 answers a pair put every crowd of the
    # bench at 74-79%, golden included (docs/quality-bench.md, cost13).
    cap_extra: float | None = Field(default=0.9, ge=0, le=15)
    # Golden pairs asked again each round: `golden_share` of the pairs extended
    # ("extended"), or that times the share of the workers not blocked still unjudged
    # ("unjudged": quality_check.reask_golden).
    golden_reask: Literal["extended", "unjudged"] = "extended"
    # Who the round's golden re-asks go to: "anyone" (the marketplace's first taker; the
    # default), or "unchecked": the suspects, workers whose latest answers a late change
    # point to content-blind answering explains better than careful answering
    # (quality_check.golden_targets), at most three pairs each, kept off everyone else but
    # one spare, the count carried over rounds (the golden share of all extensions so far,
    # less the re-asks made). Why: a sleeper (careful for a dozen answers, then random)
    # met one golden pair or none after turning, too little to catch. Measured
    # (docs/quality-bench.md, "Golden re-asks aimed at suspects", seeds 0-1): the golden
    # pairs do reach the sleepers (exam configuration: 25 of 33 in the round after the
    # first, 8 of 36 before), but sleepers
    # blocked 2 -> 4 of 24 (default) and 7 -> 4 (exam), colluders 14 -> 10 of 19, same
    # side over the cost bar (81.5%): off by default. Only where the marketplace keeps a
    # worker off a single task (the simulator, Toloka); elsewhere it is "anyone"
    # (Prolific's exclusions hold for a whole batch).
    golden_to: Literal["anyone", "unchecked"] = "anyone"

    @model_validator(mode="after")
    def _ordered(self) -> DynamicOverlapSpec:
        if self.min_overlap > self.max_overlap:
            raise ValueError("min_overlap must not exceed max_overlap")
        if (
            self.fill_extra is not None
            and self.cap_extra is not None
            and self.fill_extra > self.cap_extra
        ):
            raise ValueError("fill_extra must not exceed cap_extra")
        return self


class GradeLevel(_Strict):
    label: str = Field(min_length=1, max_length=60)
    # What the exported `margin` column says for a pair aggregated at this level (the
    # margin reward-model training adds to its loss, as in Llama 2).
    margin: float = Field(ge=0)


# Llama 2's four levels (Touvron et al. 2023, section 3.2.1) with its "margin small" values.
LLAMA2_LEVELS: tuple[GradeLevel, ...] = (
    GradeLevel(label="negligibly better", margin=0.0),
    GradeLevel(label="slightly better", margin=1 / 3),
    GradeLevel(label="better", margin=2 / 3),
    GradeLevel(label="significantly better", margin=1.0),
)


class GradedSpec(_Strict):
    """Graded preferences: a worker picks a side and how much better it is.

    `levels` go from the weakest to the strongest; with `unsure`, "tie" is offered as
    "unsure" (no side). Aggregated by crowdloop.aggregation.graded (an ordinal model with
    each worker's reliability, scale use and position bias); golden pairs with a `level`
    pass within one step of it.
    """

    levels: tuple[GradeLevel, ...] = Field(default=LLAMA2_LEVELS, min_length=2, max_length=9)
    unsure: bool = True
    unsure_label: str = Field(default="unsure", min_length=1, max_length=60)

    @model_validator(mode="after")
    def _consistent(self) -> GradedSpec:
        labels = [lv.label for lv in self.levels]
        for i, label in enumerate(labels):
            if label in labels[:i] or (self.unsure and label == self.unsure_label):
                _fail(("levels", i, "label"), f"{label!r} is used twice", label)
        for i in range(1, len(self.levels)):
            if self.levels[i].margin < self.levels[i - 1].margin:
                _fail(
                    ("levels", i, "margin"),
                    "levels go weakest first: a margin must not be below the one before",
                    self.levels[i].margin,
                )
        return self

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(lv.label for lv in self.levels)

    def rank(self, label: str) -> int | None:
        """The 1-based level of a label (None: not on the scale)."""
        return self.labels.index(label) + 1 if label in self.labels else None


class PreferencesSpec(_Strict):
    candidates_file: Path
    pairing: PairingSpec = PairingSpec()
    golden_file: Path | None = None
    golden_share: float = Field(default=0.10, ge=0, lt=1)
    # The overlap of golden pairs, and of every pair when `dynamic_overlap` is null.
    overlap: int = Field(default=3, ge=1, le=15)
    # The default: ask little, then more where unsure (bench/bench_quality.py measures it).
    dynamic_overlap: DynamicOverlapSpec | None = DynamicOverlapSpec()
    instruction: str = "Which answer is better? Choose A, B, or tie."
    # bradley_terry: per-prompt BT with ties and plain vote counts per pair; worker_aware:
    # per-worker attentiveness and position bias learned over the campaign, votes weighted.
    aggregation: Literal["bradley_terry", "worker_aware"] = "worker_aware"
    min_confidence: float = Field(default=0.6, ge=0.5, le=1)
    reward: Money = Money(amount=Decimal("0.03"))
    export: ExportSpec
    # Off by default: plain A / B / tie. Set, every comparison also asks how much better.
    graded: GradedSpec | None = None
    # Offer workers an optional free-text rationale beside each comparison (kept with the
    # raw judgment, shown nowhere else).
    rationale: bool = False


class TargetSpec(_Strict):
    kind: Literal["inline", "deployment", "event"] = "inline"
    deployment: str | None = None  # "flow-name/deployment-name"
    emit_event: bool = True

    @model_validator(mode="after")
    def _deployment_named(self) -> TargetSpec:
        if self.kind == "deployment" and not self.deployment:
            raise ValueError("kind 'deployment' needs a 'deployment' name (flow/deployment)")
        return self


def _money(value: Any) -> Any:
    """A bare amount (`cap: 50`, `cap: "12.50"`) is that many of the default currency."""
    if isinstance(value, int | float | str | Decimal) and not isinstance(value, bool):
        return {"amount": str(value)}
    return value


class BudgetAssumptions(_Strict):
    """What the *expected* cost assumes about the crowd; the worst case assumes nothing.

    The defaults are what bench/bench_estimate.py measured on the simulated crowds of the
    demo and of bench/bench_quality.py; a real crowd may differ, so state what you know.
    """

    # Share of the still-unsure pairs dynamic overlap asks again after each round
    # (geometric: q + q^2 + ... extra judgments per pair, up to max_overlap). Measured
    # 0.49-0.67 (default and quality-first settings, typical and spammy crowds).
    extend_rate: float = Field(default=0.55, ge=0, le=1)
    # Workers expected to take the exam; null: every seat (`quality.exam.takers`).
    exam_takers: int | None = Field(default=None, ge=1)
    # Share of written texts that verification accepts (demonstrations; measured 0.63).
    text_accept_rate: float = Field(default=0.65, gt=0, le=1)
    # Share of verifications whose verdict is unsure after the first answers and goes to
    # two more verifiers (demonstrations.verify_target_confidence). 0.3: one answer in
    # three differing from the others at a 14% error rate per answer (an analytic figure
    # for the demo's crowd, not measured).
    verify_extend_rate: float = Field(default=0.3, ge=0, le=1)
    # Golden verifications asked of verifiers not yet cleared
    # (`demonstrations.golden_per_verifier`), per real verification answer: measured
    # 0.75 at the demo's size (about 170 for 225 real answers, 60-80 verifiers); fewer
    # where each verifier gives more answers.
    cleared_golden_rate: float = Field(default=0.75, ge=0)
    # Extra paid assignments from re-asks (blocked workers' answers excluded, garbled
    # answers), as a share of the work above. 0 by default: on a platform with review, a
    # re-ask mostly replaces a rejected (unpaid) answer; say 0.05-0.1 where nothing is
    # rejected (no REVIEW capability, or `quality.reject_untrusted_work: false`).
    rework_share: float = Field(default=0.0, ge=0, le=1)


class BudgetSpec(_Strict):
    """Money under control: a hard cap, an approval threshold, a pause point.

    Every create call reserves its worst-case cost before it is sent; a push that would
    take the campaign's committed spend past `pause_at` x `cap` (or past the cap) is not
    sent and the campaign pauses for approval (see crowdloop/stages/budget.py).
    """

    cap: Money
    # An estimate whose worst case is above this needs approval before anything is created;
    # null: no approval at launch.
    approval_threshold: Money | None = None
    # Share of the cap at which the campaign pauses and asks again (1: only at the cap).
    pause_at: float = Field(default=1.0, gt=0, le=1)
    # The platform's fee as a share of rewards, for a connector that cannot price it (or to
    # override its published rate, e.g. a negotiated contract); null: the connector's.
    fee_rate: Decimal | None = Field(default=None, ge=0, le=10)
    assume: BudgetAssumptions = BudgetAssumptions()

    @field_validator("cap", "approval_threshold", mode="before")
    @classmethod
    def _bare_amount(cls, v: Any) -> Any:
        return _money(v)

    @field_validator("cap")
    @classmethod
    def _positive(cls, v: Money) -> Money:
        if v.amount <= 0:
            raise ValueError("the cap must be more than 0")
        return v


class RetrainingSpec(_Strict):
    threshold_pairs: int = Field(default=100, ge=1)
    target: TargetSpec = TargetSpec()


class RoutingSpec(_Strict):
    """AI first: every production comparison goes to a model judge (`ai`, a connector such
    as aijudge) before any human sees it; a pair goes to the human crowd when the judge's
    confidence is under `confidence_threshold`, when its two position-swapped answers
    disagree (`human_on_swap_disagreement`), when its answer could not be read, or when the
    pair is drawn for audit (`audit_rate`, a seeded draw per pair: humans answer it and the
    report sets the judge's verdict beside theirs). Golden and exam pairs always go to
    humans: they measure workers. Decided pairs keep the judge's verdict as their judgment.
    In a ranking campaign the same holds per ranking set, and a set also goes to humans
    when the judge's rankings of it shown in order and reversed agree less than
    `min_order_agreement` (Kendall's tau-b; instead of `human_on_swap_disagreement`). In a
    rating campaign, per rating item: it also goes to humans when the judge's two asks
    (aspects listed in order and reversed) differ by more than `max_score_difference`
    points on some aspect.
    (stages/routing.py; bench/bench_ai_routing.py measures the thresholds.)
    """

    ai: ConnectorSpec = ConnectorSpec(name="aijudge")
    # 0.8: within a point of all-human accuracy at under half its human judgments on the
    # simulator, seeds 0-5 and held-out 6-8 (bench/bench_ai_routing.py; README, *Measured:
    # AI-first against all-human*); 0.7 lost 1.5-2 points there (its decided pairs ~92% right).
    confidence_threshold: float = Field(default=0.8, ge=0, le=1)
    human_on_swap_disagreement: bool = True
    audit_rate: float = Field(default=0.05, ge=0, le=1)
    # The first overlap of a pair the judge sent to humans (it found the pair hard); dynamic
    # overlap goes on from there. Null: the campaign's own first overlap.
    human_min_overlap: int | None = Field(default=None, ge=1, le=15)
    # Pairs sent to humans for low confidence: the judge's verdict (both orders agreeing)
    # counts as one more worker's vote in the aggregation and in dynamic overlap's stopping
    # rule, weighed by the reliability the worker-aware fit finds for it on those pairs
    # (stages/routing.sent_back_votes). Off by default: under the threshold the judge is
    # near a coin, so its vote disagrees with the first human about half the time and
    # dynamic overlap buys more humans (+9% of the human judgments at 0.8 on the simulator,
    # for a few tenths of a point; README). Off: the humans decide those pairs alone.
    sent_back_vote: bool = False
    # Ranking sets: the least Kendall's tau-b between the judge's two orders' rankings that
    # lets it decide the set (1: identical rankings only; 0.6 lets one pair of four
    # responses swap, tau 2/3). Pairs ignore it. On the simulator 0.6 and 1.0 ranked alike
    # and 0.6 sent a few sets fewer to humans (bench/bench_ai_routing.py --ranking, README).
    min_order_agreement: float = Field(default=0.6, ge=-1, le=1)
    # Rating items: the most the judge's scores of one aspect may differ, in scale points,
    # between its two asks (the aspects listed in order and reversed) for it to decide the
    # item; more on any aspect -> humans ("order_disagrees"). Pairs and sets ignore it.
    max_score_difference: int = Field(default=1, ge=0, le=10)


class CampaignSpec(_Strict):
    name: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    connector: ConnectorSpec = ConnectorSpec()
    batch_size: int = Field(default=500, ge=1, le=10_000)
    poll_interval_s: float = Field(default=2.0, gt=0)
    stage_timeout_s: float = Field(default=24 * 3600, gt=0)
    # No new submission for this long: a crowdloop.campaign.stalled event (once a spell).
    stall_after_s: float = Field(default=1800, gt=0)
    seed: int = 0
    output_dir: Path = Path("crowdloop-output")
    quality: QualitySpec = QualitySpec()
    demonstrations: DemonstrationsSpec | None = None
    preferences: PreferencesSpec | None = None
    retraining: RetrainingSpec | None = None
    # Off by default: a campaign without a budget spends what its work costs.
    budget: BudgetSpec | None = None
    # Off by default: every comparison goes to the human crowd.
    routing: RoutingSpec | None = None
    # k-wise rankings (models/ranking_spec.py).
    ranking: RankingSpec | None = None
    # Multi-aspect Likert ratings (models/rating_spec.py).
    rating: RatingSpec | None = None

    @model_validator(mode="after")
    def _has_work(self) -> CampaignSpec:
        if (
            self.demonstrations is None
            and self.preferences is None
            and self.ranking is None
            and self.rating is None
        ):
            raise ValueError(
                "a campaign needs a 'demonstrations', a 'preferences' or a 'ranking' section"
                " (or a 'rating' one)"
            )
        return self

    @model_validator(mode="after")
    def _rating_alone(self) -> CampaignSpec:
        # Each reads its own candidates into the same prompt and response rows, and their
        # golden checks would mix in one worker tally: run them as separate campaigns.
        if self.rating is not None and (self.preferences is not None or self.ranking is not None):
            _fail(
                ("rating",),
                "a campaign collects ratings on their own, not beside preferences or "
                "rankings: run the ratings as a campaign of their own",
                self.rating.model_dump(mode="json"),
            )
        return self

    @model_validator(mode="after")
    def _ranking_alone(self) -> CampaignSpec:
        # Both would score the same candidates into one table; run them as two campaigns.
        if self.ranking is not None and self.preferences is not None:
            _fail(
                ("ranking",),
                "a campaign collects pairwise preferences or rankings, not both: "
                "run the rankings as a campaign of their own",
                self.ranking.model_dump(mode="json"),
            )
        return self

    @model_validator(mode="after")
    def _routing_needs_preferences(self) -> CampaignSpec:
        if (
            self.routing is not None
            and self.preferences is None
            and self.ranking is None
            and self.rating is None
        ):
            _fail(
                ("routing",),
                "routes comparisons, ranking sets or rating items: it needs a "
                "'preferences', a 'ranking' or a 'rating' section",
                self.routing.model_dump(mode="json"),
            )
        return self

    @model_validator(mode="after")
    def _exam_fits(self) -> CampaignSpec:
        exam = self.quality.exam
        if exam is None:
            return self
        prefs = self.preferences
        if prefs is None or prefs.golden_file is None:
            _fail(
                ("quality", "exam"),
                "an exam is drawn from the golden pairs: it needs 'preferences.golden_file'",
                exam.model_dump(mode="json"),
            )
        dynamic = prefs.dynamic_overlap
        widest = max(prefs.overlap, dynamic.max_overlap if dynamic else 0)
        if exam.min_passers < widest:
            _fail(
                ("quality", "exam", "min_passers"),
                f"must be at least the largest overlap production asks for ({widest}), "
                "or a pair could wait for workers who never qualify",
                exam.min_passers,
            )
        return self

    @model_validator(mode="after")
    def _budget_currency(self) -> CampaignSpec:
        budget = self.budget
        if budget is None:
            return self
        currency = budget.cap.currency
        if budget.approval_threshold and budget.approval_threshold.currency != currency:
            _fail(
                ("budget", "approval_threshold"),
                f"must be in the cap's currency ({currency})",
                budget.approval_threshold.model_dump(mode="json"),
            )
        for loc, money in self.rewards():
            if money.currency != currency:
                _fail(
                    loc,
                    f"is in {money.currency} but budget.cap is in {currency}: "
                    "a budget needs every reward in its currency",
                    money.model_dump(mode="json"),
                )
        return self

    def rewards(self) -> list[tuple[tuple[str, ...], Money]]:
        """Every reward the campaign pays, with its location in the file."""
        out: list[tuple[tuple[str, ...], Money]] = []
        if self.demonstrations:
            out.append((("demonstrations", "reward"), self.demonstrations.reward))
            out.append((("demonstrations", "verify_reward"), self.demonstrations.verify_reward))
        if self.preferences:
            out.append((("preferences", "reward"), self.preferences.reward))
        if self.ranking:
            out.append((("ranking", "reward"), self.ranking.reward))
        if self.rating:
            out.append((("rating", "reward"), self.rating.reward))
        if self.quality.exam and self.quality.exam.reward:
            out.append((("quality", "exam", "reward"), self.quality.exam.reward))
        return out

    @field_validator("output_dir")
    @classmethod
    def _no_empty(cls, v: Path) -> Path:
        if not str(v):
            raise ValueError("output_dir must not be empty")
        return v

    def resolved(self, base: Path) -> CampaignSpec:
        """Relative paths in the file are relative to the file's folder."""

        def fix(p: Path | None) -> Path | None:
            return None if p is None or p.is_absolute() else (base / p)

        update: dict[str, Any] = {"output_dir": fix(self.output_dir) or self.output_dir}
        if self.demonstrations:
            d = self.demonstrations
            update["demonstrations"] = d.model_copy(
                update={
                    "golden_file": fix(d.golden_file) or d.golden_file,
                    "export": d.export.model_copy(
                        update={"path": fix(d.export.path) or d.export.path}
                    ),
                }
            )
        if self.preferences:
            p = self.preferences
            pairing = p.pairing.model_copy(
                update={"pairs_file": fix(p.pairing.pairs_file) or p.pairing.pairs_file}
            )
            update["preferences"] = p.model_copy(
                update={
                    "pairing": pairing,
                    "candidates_file": fix(p.candidates_file) or p.candidates_file,
                    "golden_file": fix(p.golden_file) or p.golden_file,
                    "export": ExportSpec(path=fix(p.export.path) or p.export.path),
                }
            )
        if self.ranking:
            update["ranking"] = self.ranking.resolved(fix)
        if self.rating:
            update["rating"] = self.rating.resolved(fix)
        return self.model_copy(update=update)


def _fail(loc: tuple[str | int, ...], message: str, value: Any) -> NoReturn:
    """Raise a validation error located at `loc` (a cross-section check names its field)."""
    raise ValidationError.from_exception_data(
        "CampaignSpec",
        [InitErrorDetails(type=PydanticCustomError("campaign", message), loc=loc, input=value)],
    )


def _node_line(node: yaml.Node | None, loc: Sequence[int | str]) -> int | None:
    """Line (1-based) of the deepest YAML node the pydantic error location reaches."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == part), None)
            if match is None:
                break
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line


def load_campaign(path: Path) -> CampaignSpec:
    """Load and validate a campaign YAML file; relative paths resolve against its folder."""
    if not path.is_file():
        raise SpecError(f"{path}: campaign file not found")
    text = _decode(path, path.read_bytes())
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.reader.ReaderError as exc:  # a raw control character in the stream
        line = text.count("\n", 0, exc.position) + 1
        raise SpecError(
            f"{path}:{line}: not valid YAML: {_control_message(chr(exc.character))}"
            if isinstance(exc.character, int)
            else f"{path}:{line}: not valid YAML ({exc.reason})"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise SpecError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping at the top level")
    bad = _bad_text(data)
    if bad:
        where = f"{path}:{_node_line(root, bad[0]) or 1}"
        raise SpecError(f"{where}: field {_format_loc(bad[0])!r}: {_control_message(bad[1])}")
    try:
        spec = CampaignSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_located(path, root, exc, ())) from None
    _check_connector(path, root, spec)
    # Absolute, so the same file gives the same spec (and hash) from any working directory.
    return spec.resolved(path.resolve().parent)


def _located(
    path: Path, root: yaml.Node | None, exc: ValidationError, prefix: tuple[str, ...]
) -> str:
    """One `file:line: field 'a.b': message` line per error."""
    problems = []
    for err in exc.errors():
        loc = [
            *prefix,
            *(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))),
        ]
        line = _node_line(root, loc)
        where = f"{path}:{line}" if line else str(path)
        problems.append(f"{where}: field {_format_loc(loc)!r}: {err['msg']}")
    return "\n".join(problems)


def _check_connector(path: Path, root: yaml.Node | None, spec: CampaignSpec) -> None:
    """The connector is installed and its options fit its options model."""
    from crowdloop.connectors.registry import UnknownConnector, validate_options

    sections: list[tuple[tuple[str, ...], ConnectorSpec]] = [(("connector",), spec.connector)]
    if spec.routing is not None:
        sections.append((("routing", "ai"), spec.routing.ai))
    for where, connector in sections:
        try:
            validate_options(connector.name, connector.options)
        except UnknownConnector as exc:
            line = _node_line(root, [*where, "name"])
            raise SpecError(f"{path}:{line}: field '{'.'.join(where)}.name': {exc}") from None
        except ValidationError as exc:
            raise SpecError(_located(path, root, exc, (*where, "options"))) from None
