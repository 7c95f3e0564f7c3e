"""Wire models of Toloka API v1: the bodies crowdloop sends and the ones it reads back.

Only this folder sees them; `connector.py` maps them to and from the domain. Models of
what Toloka returns ignore fields they do not name, so a new Toloka field breaks nothing.
Assignments and tasks are kept as raw JSON in their page models on purpose: one
malformed item becomes a quarantined row (or is skipped as foreign), not a failed page.

Field names and shapes follow the Toloka API reference (toloka.ai/docs/api, mirrored in
github.com/Toloka/docs `en/api/concepts/*.md`) and toloka-kit 1.2.3
(`toloka/client/pool/__init__.py`, `task.py`, `assignment.py`, `operations.py`,
`user_restriction.py`, `skill.py`, `user_skill.py`, `filter.py`, `search_requests.py`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# The input field every crowdloop task carries: our TaskItem.key. The project's input
# spec must declare it (hidden from Tolokers); `find_tasks` and the submission reader
# recover the key from it.
KEY_FIELD = "crowdloop_key"
KIND_FIELD = "kind"
# Pool metadata key holding the batch idempotency key (`find_batch` matches on it).
POOL_KEY_METADATA = "crowdloop_key"

# Input fields per task kind (besides KEY_FIELD, KIND_FIELD and "instruction").
INPUT_FIELDS: dict[str, tuple[str, ...]] = {
    "compare": ("prompt", "left", "right"),
    "write_prompt": ("topic",),
    "write_response": ("prompt",),
    "verify": ("target", "prompt", "text"),
}
# The output field a Toloker fills in, per task kind.
OUTPUT_FIELD: dict[str, str] = {
    "compare": "choice",  # "left" | "right" | "tie"
    "write_prompt": "text",
    "write_response": "text",
    "verify": "verdict",  # "accept" | "reject"
}

AssignmentStatus = Literal["ACTIVE", "SUBMITTED", "ACCEPTED", "REJECTED", "SKIPPED", "EXPIRED"]
# Assignments whose answers exist (what `iter_submissions` reads).
ANSWERED_STATUSES = ("SUBMITTED", "ACCEPTED", "REJECTED")


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


# --- errors ---------------------------------------------------------------------------------


class WireError(_Wire):
    """Toloka's error body: `{"request_id", "code", "message", "payload"}` (errors.md)."""

    code: str = ""
    message: str = ""
    request_id: str | None = None
    payload: Any = None


# --- projects -------------------------------------------------------------------------------


class TaskSpec(_Wire):
    input_spec: dict[str, Any] = Field(default_factory=dict)
    output_spec: dict[str, Any] = Field(default_factory=dict)


class WireProject(_Wire):
    id: str
    status: str | None = None
    task_spec: TaskSpec = Field(default_factory=TaskSpec)


# --- pools ----------------------------------------------------------------------------------


class PoolDefaults(_Wire):
    default_overlap_for_new_task_suites: int = 1
    default_overlap_for_new_tasks: int = 1


class MixerConfig(_Wire):
    real_tasks_count: int
    golden_tasks_count: int = 0
    training_tasks_count: int = 0


class PoolCreate(BaseModel):
    """POST /v1/pools body (create-pool.md). `extra` carries operator-chosen pool settings
    (filter, quality_control, ...) merged in from the `pool_extra` option."""

    model_config = ConfigDict(extra="allow")

    project_id: str
    private_name: str
    private_comment: str
    public_description: str
    may_contain_adult_content: bool
    will_expire: str
    reward_per_assignment: float
    assignment_max_duration_seconds: int
    auto_accept_solutions: bool
    auto_accept_period_day: int
    defaults: PoolDefaults
    mixer_config: MixerConfig
    metadata: dict[str, list[str]]


class WirePool(_Wire):
    id: str
    project_id: str | None = None
    private_name: str | None = None
    private_comment: str | None = None
    status: str = "CLOSED"  # OPEN | CLOSED | ARCHIVED | LOCKED
    last_close_reason: str | None = None
    metadata: dict[str, list[str]] | None = None


class PoolPage(_Wire):
    items: list[WirePool]
    has_more: bool = False


# --- tasks ----------------------------------------------------------------------------------


class TaskCreate(BaseModel):
    """One element of the POST /v1/tasks body (create-task.md). No known_solutions: crowdloop
    keeps golden answers on its own side and never sends them."""

    pool_id: str
    input_values: dict[str, str]
    overlap: int
    unavailable_for: list[str] = Field(default_factory=list)


class TaskRef(_Wire):
    id: str
    pool_id: str | None = None
    input_values: dict[str, Any] = Field(default_factory=dict)
    overlap: int | None = None


class TaskPage(_Wire):
    items: list[dict[str, Any]]  # read one by one: foreign tasks may lack our key
    has_more: bool = False


# --- operations -----------------------------------------------------------------------------


class WireOperation(_Wire):
    id: str
    type: str | None = None
    status: Literal["PENDING", "RUNNING", "SUCCESS", "FAIL"]
    details: Any = None

    @property
    def done(self) -> bool:
        return self.status in ("SUCCESS", "FAIL")


class OperationLogItem(_Wire):
    type: str
    success: bool
    input: dict[str, Any] = Field(default_factory=dict)
    output: dict[str, Any] = Field(default_factory=dict)


# --- assignments ----------------------------------------------------------------------------


class AssignmentPage(_Wire):
    items: list[dict[str, Any]]  # read one by one: a garbled one is quarantined
    has_more: bool = False


class WireSolution(_Wire):
    output_values: dict[str, Any]


class WireAssignment(_Wire):
    id: str
    user_id: str
    status: str
    submitted: str
    pool_id: str | None = None
    tasks: list[dict[str, Any]]
    solutions: list[dict[str, Any]] = Field(default_factory=list)


class AssignmentPatch(BaseModel):
    """PATCH /v1/assignments/{id} body (accept.md)."""

    status: Literal["ACCEPTED", "REJECTED"]
    public_comment: str


class AssignmentState(_Wire):
    id: str | None = None
    status: str


# --- workers --------------------------------------------------------------------------------


class UserRestriction(BaseModel):
    """PUT /v1/user-restrictions body (ban-create.md; toloka-kit `set_user_restriction`)."""

    scope: Literal["ALL_PROJECTS", "PROJECT", "POOL"]
    user_id: str
    private_comment: str
    project_id: str | None = None
    pool_id: str | None = None


# --- skills (crowdloop qualifications) -------------------------------------------------------


class SkillCreate(BaseModel):
    """POST /v1/skills body (create-skill.md; toloka-kit `Skill`). `hidden` keeps the skill's
    name and value out of the Tolokers' view (Toloka's default, sent explicitly)."""

    name: str
    private_comment: str
    hidden: bool = True


class WireSkill(_Wire):
    id: str
    name: str


class SkillPage(_Wire):
    items: list[WireSkill]
    has_more: bool = False


class UserSkillSet(BaseModel):
    """PUT /v1/user-skills body (set-skill; toloka-kit `SetUserSkillRequest`): sets the
    Toloker's value of the skill (0..100), creating the user-skill on first use."""

    skill_id: str
    user_id: str
    value: float


class WireUserSkill(_Wire):
    id: str | None = None
    skill_id: str
    user_id: str
    value: float | None = None


class WireRequester(_Wire):
    """GET /v1/requester: the account and its balance in dollars (toloka-kit
    src/client/requester.py `Requester`: id, balance, public_name, company)."""

    id: str
    balance: Decimal | None = None
    public_name: dict[str, str] = Field(default_factory=dict)
