"""The connector contract every marketplace adapter implements.

A connector is synchronous and short-lived: a flow task opens one (`with connector:`),
makes its calls, and closes it. Every create call takes an idempotency key derived from
crowdloop's own ids; the push ledger records the key before the call is made, so a retry
or a rerun after a crash can reconcile with `find_batch` / `find_tasks` instead of
creating twice.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Self

from pydantic import BaseModel

from crowdloop.connectors.errors import AuthError, ConnectorError, GarbledResponse, NotSupported
from crowdloop.models.domain import (
    AddItemsResult,
    BatchRef,
    BatchSpec,
    BatchStatus,
    BlockScope,
    Capability,
    CostQuote,
    FeeModel,
    Money,
    ReviewDecision,
    SubmissionPage,
    TaskItem,
)


@dataclass(frozen=True)
class CheckItem:
    """One line of a first-contact check: `ok` is None when it was not (or cannot be) checked."""

    name: str
    ok: bool | None
    detail: str


@dataclass(frozen=True)
class CheckReport:
    """What `Connector.check` found. `ok` is False as soon as one item failed."""

    connector: str
    items: tuple[CheckItem, ...]

    @property
    def ok(self) -> bool:
        return all(item.ok is not False for item in self.items)

    @property
    def failed(self) -> tuple[CheckItem, ...]:
        return tuple(item for item in self.items if item.ok is False)


def probe(name: str, call: Callable[[], str]) -> CheckItem:
    """Run one read-only check; `call` returns what it saw, a ConnectorError fails it."""
    try:
        return CheckItem(name, True, call())
    except AuthError as exc:
        return CheckItem(
            name, False, f"credentials refused: {exc} (check the token / key and its account)"
        )
    except ConnectorError as exc:
        return CheckItem(name, False, str(exc))


class Connector(ABC):
    name: ClassVar[str]
    capabilities: ClassVar[frozenset[Capability]]
    # How many tasks one add_items call may carry; the flows chunk to this.
    max_items_per_call: ClassVar[int] = 500
    # The platform's fee on top of rewards, where the vendor documents it (cite the page in
    # a comment). None: this connector cannot price the fee; estimates and reservations
    # then count rewards only and say so, unless the campaign's `budget.fee_rate` states it.
    fee: ClassVar[FeeModel | None] = None
    # The typed `connector.options` of a campaign file (pydantic, `extra="forbid"`),
    # validated when the file is loaded, before anything starts. Keep it in a module that
    # does not import Prefect (see connectors/simulator/options.py).
    options_model: ClassVar[type[BaseModel] | None] = None

    @classmethod
    @abstractmethod
    def from_config(cls, options: Mapping[str, Any], credentials_block: str | None) -> Self:
        """Build from a campaign's `connector:` section.

        Secrets come from the named Prefect credentials block, or from environment
        variables when no block is named; `options` holds only non-secret settings.
        """

    # --- lifecycle ---------------------------------------------------------------------
    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release HTTP connections."""

    def batch_ref(self, external_id: str | int) -> BatchRef:
        """Our handle on one of this marketplace's batches (pool / study / project id)."""
        return BatchRef(connector=self.name, external_id=str(external_id))

    def added(self, items: Sequence[TaskItem], ids: Mapping[str, str]) -> AddItemsResult:
        """The result of `add_items`: every item's task id, or GarbledResponse naming the
        keys the platform gave no id for (a task we cannot find again is worse than none)."""
        lost = [item.key for item in items if item.key not in ids]
        if lost:
            raise GarbledResponse(
                self.name, f"add_items: no task id for {len(lost)} key(s), e.g. {lost[:5]}"
            )
        return AddItemsResult(external_ids={item.key: ids[item.key] for item in items})

    def require(self, capability: Capability) -> None:
        if capability not in self.capabilities:
            raise NotSupported(self.name, capability.value)

    def check(self) -> CheckReport:
        """First contact: prove the credentials, the account's access and its balance with
        read-only calls, creating nothing (`crowdloop connectors check NAME`).

        The default checks nothing and says so; a connector overrides it with the reads its
        platform offers and lists, as `ok=None` items, what it cannot check.
        """
        return CheckReport(
            self.name,
            (
                CheckItem(
                    "credentials, access, balance",
                    None,
                    f"the {self.name} connector has no read-only check; not verified",
                ),
            ),
        )

    # --- creates (keyed) -----------------------------------------------------------------
    @abstractmethod
    def create_batch(self, spec: BatchSpec, *, idempotency_key: str) -> BatchRef: ...

    @abstractmethod
    def add_items(
        self, batch: BatchRef, items: Sequence[TaskItem], *, idempotency_key: str
    ) -> AddItemsResult:
        """Publish tasks. Replaying the same key (or the same task keys) creates nothing new."""

    @abstractmethod
    def find_batch(self, idempotency_key: str) -> BatchRef | None:
        """Look up a batch created with this key; used to reconcile an unrecorded create."""

    @abstractmethod
    def find_tasks(self, batch: BatchRef, task_keys: Sequence[str]) -> dict[str, str]:
        """Which of these task keys exist in the batch: key -> marketplace task id."""

    # --- batch control ---------------------------------------------------------------------
    @abstractmethod
    def start(self, batch: BatchRef) -> None: ...

    @abstractmethod
    def stop(self, batch: BatchRef, *, reason: str) -> None:
        """Close the batch for good (campaign complete or cancelled): no new work is handed
        out; submissions already made stay readable. Stopping a stopped batch is a no-op."""

    def pause(self, batch: BatchRef) -> None:
        """Stop handing out new work until `resume` (Capability.PAUSE).

        Pausing a paused batch is a no-op; submissions keep arriving for work in hand.
        """
        raise NotSupported(self.name, Capability.PAUSE.value)

    def resume(self, batch: BatchRef) -> None:
        """Hand out work again after `pause`; resuming an open batch is a no-op."""
        raise NotSupported(self.name, Capability.PAUSE.value)

    @abstractmethod
    def get_status(self, batch: BatchRef) -> BatchStatus: ...

    # --- results -----------------------------------------------------------------------
    @abstractmethod
    def iter_submissions(self, batch: BatchRef, *, cursor: str | None) -> Iterator[SubmissionPage]:
        """Pages of submissions after `cursor`, each carrying the cursor to resume from."""

    # --- money and workers ---------------------------------------------------------------
    def review(self, batch: BatchRef, decisions: Sequence[ReviewDecision]) -> None:
        """Accept / reject; repeating a decision already applied is a no-op."""
        raise NotSupported(self.name, Capability.REVIEW.value)

    def block_worker(self, worker_id: str, *, scope: BlockScope, reason: str) -> None:
        raise NotSupported(self.name, Capability.BLOCK_WORKER.value)

    def spend(self, batch: BatchRef) -> Money | None:
        """Money spent on the batch as the platform reports it; None if it does not."""
        return None

    @classmethod
    def quote(cls, options: Mapping[str, Any], items: Sequence[TaskItem]) -> CostQuote | None:
        """What these tasks cost with these `connector.options` on a platform that bills by
        the request rather than by the batch's reward (a model judge billing tokens): the
        worst case a budgeted campaign reserves before the call (stages/routing.py) and the
        expected case `crowdloop estimate` shows. A class method: the estimate prices work
        without credentials. None: priced as assignments x reward, which the push reserves
        and the estimate counts. A connector that cannot bound the cost raises
        InvalidRequest."""
        return None

    # --- qualifications (Capability.QUALIFY_WORKERS) ---------------------------------------
    def ensure_qualification(self, qualification: str) -> None:
        """Create the named qualification if the platform does not have it yet (idempotent).

        Called before a batch requires it or a worker is granted it; the name is ours and
        the connector maps it to the platform's object (found again by name on a rerun).
        """
        raise NotSupported(self.name, Capability.QUALIFY_WORKERS.value)

    def grant_qualification(self, worker_id: str, qualification: str) -> None:
        """Give the worker the named qualification; granting it again changes nothing.

        A batch created with `BatchSpec.required_qualification` is offered only to holders,
        including workers granted after the batch opened: a connector that declares
        QUALIFY_WORKERS must honour both. crowdloop grants one per campaign to the workers
        who passed its exam. How the platforms do it:

        - Toloka: a skill (POST /skills; found by name with GET /skills?name=); the grant
          sets the skill on the Toloker (PUT /user-skills {skill_id, user_id, value}); the
          pool's filter {"category": "skill", "key": <skill id>, "operator": "GTE",
          "value": ...} admits holders.
          https://toloka.ai/docs/toloka-kit/reference/toloka.client.skill.Skill/ ,
          https://yandex.ru/dev/tasks-api/doc/ru/reference/skills/put-user-skills ,
          https://yandex.ru/dev/tasks-api/doc/ru/filters/filter-skill
        - Prolific: a participant group (POST /api/v1/participant-groups/); the grant adds
          the participant (POST /api/v1/participant-groups/{id}/participants/, members
          already in are ignored); the study carries a participant-group allowlist filter,
          which also admits members added after it was published.
          https://docs.prolific.com/api-reference/participant-groups ,
          https://docs.prolific.com/api-reference/participant-groups/add-to-participant-group
        """
        raise NotSupported(self.name, Capability.QUALIFY_WORKERS.value)
