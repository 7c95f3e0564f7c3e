"""Scale AI under the contract suite: a stateful fake of Scale's v1 API on a respx router.

The fake keeps projects, batches and tasks, and answers the way the v1 API is documented
to (see crowdloop/connectors/scale/connector.py for the sources): Basic auth with the API
key as username, 409 for a taken batch name or unique_id, GET /v1/tasks filtered by
batch / status / unique_id (repeated) / completed_after / completed_before with
limit 1..100 and an opaque next_token, task cancel and audit. Its listing order is by
creation (newest first), not by completion, and its workers answer in shuffled order, so
a connector that assumes results arrive sorted by completion time fails here.
"""

from __future__ import annotations

import base64
import json
import random
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx
import respx
from pydantic import SecretStr

from crowdloop.connectors._http import RetryPolicy
from crowdloop.connectors.base import Connector
from crowdloop.connectors.scale.connector import ScaleConnector, ScaleOptions
from crowdloop.connectors.scale.credentials import ScaleCredentials
from crowdloop.connectors.testing import Harness, Op, Route, Wrap
from crowdloop.models.domain import BatchRef, TaskItem

BASE = "https://api.scale.com"
API_KEY = "test_0f3c9a7be1d24c55a8e6b2d4c7f0e913"
TASK_TYPES = ("comparison", "textcollection")

Handler = Callable[..., httpx.Response]


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _parse(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _error(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"status_code": status, "error": message})


class ServerClock:
    """The fake's time: a fixed start, one millisecond further at every reading.

    Shared by the fake server and the connector under test, it gives what real clocks give
    (a read sees every earlier completion as past, a later completion lands after the read)
    without reading the machine's clock, so a slow or loaded machine changes nothing.
    """

    def __init__(self, start: datetime = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


class FakeScale:
    """Projects, batches and tasks of one Scale account, served on `router`."""

    def __init__(
        self,
        api_key: str = API_KEY,
        *,
        seed: int = 7,
        rapid: bool = False,
        clock: ServerClock | None = None,
    ) -> None:
        self.api_key = api_key
        self.clock = clock or ServerClock()
        self.rapid = rapid  # Rapid/Studio: no task may be added to a finalized batch
        self.rng = random.Random(seed)
        self.projects: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, dict[str, Any]] = {}
        self.by_unique_id: dict[str, str] = {}
        self.started: set[str] = set()  # task ids a worker has begun: not cancelable
        self.refuse_tokens = False  # simulate expired next_tokens
        self._ids = 0
        self.router = respx.Router(base_url=BASE, assert_all_called=False)
        self._route("POST", r"^/v1/projects$", self._create_project)
        self._route("GET", r"^/v1/projects/(?P<name>[^/]+)$", self._get_project)
        self._route("POST", r"^/v1/batches$", self._create_batch)
        self._route("GET", r"^/v1/batches/(?P<name>[^/]+)$", self._get_batch)
        self._route("POST", r"^/v1/batches/(?P<name>[^/]+)/finalize$", self._finalize)
        self._route("GET", r"^/v1/batches/(?P<name>[^/]+)/status$", self._batch_status)
        self._route("POST", r"^/v1/task/(?P<task_type>[a-z]+)$", self._create_task)
        self._route("GET", r"^/v1/tasks$", self._list_tasks)
        self._route("GET", r"^/v1/task/(?P<task_id>[0-9a-f]+)$", self._get_task)
        self._route("POST", r"^/v1/task/(?P<task_id>[0-9a-f]+)/cancel$", self._cancel)
        self._route("POST", r"^/v1/task/(?P<task_id>[0-9a-f]+)/audit$", self._audit)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.router.handler)

    def _route(self, method: str, pattern: str, handler: Handler) -> None:
        def guarded(request: httpx.Request, **params: str) -> httpx.Response:
            expected = base64.b64encode(f"{self.api_key}:".encode()).decode()
            if request.headers.get("authorization") != f"Basic {expected}":
                return _error(401, "Invalid or missing API key")
            return handler(request, **params)

        self.router.route(method=method, path__regex=pattern).mock(side_effect=guarded)

    def _now(self) -> datetime:
        """Server time: strictly increasing, whole milliseconds (as Scale sends it)."""
        return self.clock()

    def _new_id(self) -> str:
        self._ids += 1
        return f"{0x5F3E0000 + self._ids:08x}{self._ids:016x}"

    # --- projects and batches -------------------------------------------------------------

    def _create_project(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body.get("type") not in TASK_TYPES or not body.get("name"):
            return _error(400, "type and name are required")
        if body["name"] in self.projects:
            return _error(409, f"Project {body['name']} already exists")
        project = {"name": body["name"], "type": body["type"], "params": body.get("params") or {}}
        self.projects[body["name"]] = project
        return httpx.Response(200, json=project)

    def _get_project(self, request: httpx.Request, name: str) -> httpx.Response:
        """GET /v1/projects/{name}: the SDK's `get_project` (scaleapi/__init__.py)."""
        project = self.projects.get(name)
        if project is None:
            return _error(404, f"Project {name} not found")
        return httpx.Response(200, json=project)

    def _create_batch(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        name, project = body.get("name"), body.get("project")
        if not name or not project:
            return _error(400, "project and name are required")
        if project not in self.projects:
            return _error(400, f"Project {project} not found")
        if name in self.batches:
            return _error(409, f"A batch with name {name} already exists")
        batch = {
            "project": project,
            "name": name,
            "callback": body.get("callback"),
            "status": "staging",
            "created_at": _iso(self._now()),
            "metadata": body.get("metadata") or {},
        }
        self.batches[name] = batch
        return httpx.Response(200, json=batch)

    def _get_batch(self, request: httpx.Request, name: str) -> httpx.Response:
        batch = self.batches.get(name)
        return httpx.Response(200, json=batch) if batch else _error(404, f"Batch {name} not found")

    def _finalize(self, request: httpx.Request, name: str) -> httpx.Response:
        batch = self.batches.get(name)
        if batch is None:
            return _error(404, f"Batch {name} not found")
        if batch["status"] != "staging":
            return _error(400, f"Batch {name} is {batch['status']}, not staging")
        batch["status"] = "in_progress"
        return httpx.Response(200, json=batch)

    def _batch_status(self, request: httpx.Request, name: str) -> httpx.Response:
        batch = self.batches.get(name)
        if batch is None:
            return _error(404, f"Batch {name} not found")
        counts = Counter(t["status"] for t in self.tasks.values() if t["batch"] == name)
        # Like the SDK documents it: a status with no task is simply absent.
        return httpx.Response(200, json={"status": batch["status"], **counts})

    # --- tasks ------------------------------------------------------------------------------

    def _create_task(self, request: httpx.Request, task_type: str) -> httpx.Response:
        if task_type not in TASK_TYPES:
            return _error(400, f"Unsupported task type {task_type}")
        body = json.loads(request.content)
        batch = self.batches.get(body.get("batch", ""))
        if batch is None:
            return _error(400, f"Batch {body.get('batch')} not found")
        if self.projects[batch["project"]]["type"] != task_type:
            return _error(400, f"Project {batch['project']} does not take {task_type} tasks")
        if self.rapid and batch["status"] != "staging":
            return _error(400, f"Batch {batch['name']} is finalized; no tasks may be added")
        problem = self._invalid_params(task_type, body)
        if problem:
            return _error(400, problem)
        uid = body.get("unique_id")
        if uid is not None and uid in self.by_unique_id:
            return _error(
                409,
                f'The unique_id ("{uid}") is already used for a different task '
                f"({self.by_unique_id[uid]}).",
            )
        task_id = self._new_id()
        params = {
            k: v
            for k, v in body.items()
            if k in ("attachments", "attachment_type", "choices", "fields")
        }
        now = _iso(self._now())
        task = {
            "task_id": task_id,
            "created_at": now,
            "updated_at": now,
            "type": task_type,
            "status": "pending",
            "instruction": body.get("instruction", ""),
            "params": params,
            "callback_url": body.get("callback_url"),
            "is_test": self.api_key.startswith("test_"),
            "urgency": "standard",
            "metadata": body.get("metadata") or {},
            "processed_attachments": [],
            "project": batch["project"],
            "batch": batch["name"],
            "unique_id": uid,
        }
        self.tasks[task_id] = task
        if uid is not None:
            self.by_unique_id[uid] = task_id
        return httpx.Response(200, json=task)

    @staticmethod
    def _invalid_params(task_type: str, body: dict[str, Any]) -> str | None:
        attachments = body.get("attachments")
        if not isinstance(body.get("instruction"), str):
            return "instruction is required"
        if not isinstance(attachments, list) or not attachments:
            return "Please include an attachment or attachments parameter"
        if task_type == "comparison":
            if not all(isinstance(a, str) for a in attachments):
                return "comparison attachments must be strings"
            choices = body.get("choices")
            if not isinstance(choices, list) or len(choices) < 2:
                return "choices must list at least two options"
            return None
        if not all(isinstance(a, dict) and a.get("type") and "content" in a for a in attachments):
            return "textcollection attachments need type and content"
        fields = body.get("fields")
        if not isinstance(fields, list) or not fields:
            return "fields is required"
        for field in fields:
            if not field.get("field_id") or field.get("type") not in ("text", "category"):
                return "every field needs a field_id and a type"
            if field["type"] == "category" and not field.get("choices"):
                return "a category field needs choices"
        return None

    def _get_task(self, request: httpx.Request, task_id: str) -> httpx.Response:
        task = self.tasks.get(task_id)
        return httpx.Response(200, json=task) if task else _error(404, f"Task {task_id} not found")

    def _list_tasks(self, request: httpx.Request) -> httpx.Response:
        q = request.url.params
        try:
            limit = int(q.get("limit", "100"))
            after = _parse(q["completed_after"]) if "completed_after" in q else None
            before = _parse(q["completed_before"]) if "completed_before" in q else None
        except ValueError as exc:
            return _error(400, f"bad query: {exc}")
        if not 1 <= limit <= 100:
            return _error(400, "limit must be between 1 and 100")
        offset = 0
        if "next_token" in q:
            if self.refuse_tokens:
                return _error(400, "next_token is invalid or expired")
            try:
                offset = int(base64.urlsafe_b64decode(q["next_token"]).decode().removeprefix("o:"))
            except ValueError:
                return _error(400, "next_token is invalid or expired")
        uids = set(q.get_list("unique_id"))
        rows = []
        for task in self.tasks.values():
            if uids and task["unique_id"] not in uids:
                continue
            if "batch" in q and task["batch"] != q["batch"]:
                continue
            if "project" in q and task["project"] != q["project"]:
                continue
            if "status" in q and task["status"] != q["status"]:
                continue
            done = _parse(task["completed_at"]) if task.get("completed_at") else None
            if (after or before) and done is None:
                continue
            if after is not None and done is not None and not done > after:
                continue
            if before is not None and done is not None and not done < before:
                continue
            rows.append(task)
        rows.sort(key=lambda t: (t["created_at"], t["task_id"]), reverse=True)
        page = rows[offset : offset + limit]
        has_more = offset + limit < len(rows)
        token = (
            base64.urlsafe_b64encode(f"o:{offset + limit}".encode()).decode() if has_more else None
        )
        body: dict[str, Any] = {
            "docs": page,
            "total": len(rows),
            "limit": limit,
            "offset": offset,
            "has_more": has_more,
        }
        if token:
            body["next_token"] = token
        return httpx.Response(200, json=body)

    def _cancel(self, request: httpx.Request, task_id: str) -> httpx.Response:
        task = self.tasks.get(task_id)
        if task is None:
            return _error(404, f"Task {task_id} not found")
        if task["status"] != "pending" or task_id in self.started:
            return _error(400, f"Task {task_id} cannot be canceled: work on it has started")
        task["status"] = "canceled"
        return httpx.Response(200, json=task)

    def _audit(self, request: httpx.Request, task_id: str) -> httpx.Response:
        task = self.tasks.get(task_id)
        if task is None:
            return _error(404, f"Task {task_id} not found")
        if task["status"] != "completed":
            return _error(400, "Only completed tasks can be audited")
        body = json.loads(request.content)
        if not isinstance(body.get("accepted"), bool):
            return _error(400, "accepted must be a boolean")
        task["customer_review_status"] = "accepted" if body["accepted"] else "rejected"
        if body.get("comments"):
            task.setdefault("customer_review_comments", []).append(body["comments"])
        task.setdefault("audits", []).append(
            {
                "audited_by": "ops@example.com",
                "audited_at": _iso(self._now()),
                "audit_result": task["customer_review_status"],
            }
        )
        return httpx.Response(200, json={"ok": True})

    # --- the crowd ----------------------------------------------------------------------------

    def complete(self, task_id: str, response: Any) -> None:
        task = self.tasks[task_id]
        when = _iso(self._now())
        task.update(status="completed", completed_at=when, updated_at=when, response=response)

    def answer_batch(self, name: str) -> int:
        """Workers answer every pending task of the batch, in shuffled order."""
        pending = [
            t for t in self.tasks.values() if t["batch"] == name and t["status"] == "pending"
        ]
        if self.rapid and self.batches[name]["status"] == "staging":
            return 0  # a Rapid batch is not worked on before it is finalized
        self.rng.shuffle(pending)
        for task in pending:
            self.complete(task["task_id"], self.valid_response(task))
        return len(pending)

    def valid_response(self, task: dict[str, Any]) -> dict[str, Any]:
        params = task["params"]
        if task["type"] == "comparison":
            return {"choice": self.rng.choice(params["choices"])}
        annotations: dict[str, Any] = {}
        for field in params["fields"]:
            if field["type"] == "text":
                annotations[field["field_id"]] = f"A worker's text for {task['task_id'][-6:]}"
            else:
                annotations[field["field_id"]] = [self.rng.choice(field["choices"])["value"]]
        return {"annotations": annotations}

    def created(self) -> tuple[int, int]:
        """(batches, crowdloop tasks): Scale tasks are counted per crowdloop key.

        A crowdloop task with overlap n is n Scale tasks (slots); publishing a slot twice
        would make a second Scale task for the same (key, slot), which fails here.
        """
        slots = Counter(
            (t["batch"], t["metadata"].get("crowdloop_key"), t["metadata"].get("crowdloop_slot"))
            for t in self.tasks.values()
        )
        doubled = [slot for slot, n in slots.items() if n > 1]
        assert not doubled, f"the same slot was published twice: {doubled[:3]}"
        keys = {(batch, key) for batch, key, _ in slots}
        return len(self.batches), len(keys)


class ScaleHarness(Harness):
    name = "scale"
    routes: ClassVar[Mapping[Op, Route]] = {
        Op.CREATE_BATCH: Route("POST", r"^/v1/batches$"),
        Op.ADD_ITEMS: Route("POST", r"^/v1/task/(comparison|textcollection)$"),
        Op.LIST_SUBMISSIONS: Route("GET", r"^/v1/tasks$"),
    }

    def __init__(self) -> None:
        super().__init__()
        self.secret = API_KEY
        self.fake = FakeScale()

    def connector(self, wrap: Wrap | None = None) -> Connector:
        transport: httpx.BaseTransport = self.fake.transport()
        client = ScaleCredentials(api_key=SecretStr(self.secret), base_url=BASE).get_client(
            timeout_s=5.0,
            retry=RetryPolicy(attempts=4),
            transport=wrap(transport) if wrap else transport,
            sleep=self.sleeps.append,
        )
        options = ScaleOptions(
            project="crowdloop-contract",
            textcollection_project="crowdloop-contract-text",
            create_projects=True,
            page_limit=3,
            settle_s=0.0,
        )
        return ScaleConnector(client, options, clock=self.fake.clock)

    def answer(self, connector: Connector, batch: BatchRef, items: list[TaskItem]) -> int:
        return self.fake.answer_batch(batch.external_id)

    def created(self) -> tuple[int, int]:
        return self.fake.created()


def make_harness() -> Harness:
    return ScaleHarness()


__all__ = ["API_KEY", "BASE", "FakeScale", "ScaleHarness", "ServerClock", "make_harness"]
