"""Toloka under the contract suite: a stateful fake of Toloka API v1 on a respx router.

`FakeToloka` keeps projects, pools, tasks, async operations (with their logs),
assignments and user restrictions in memory and answers the endpoints the connector
uses with the shapes, status codes and error bodies of the Toloka API reference
(github.com/Toloka/docs en/api/concepts/*.md) and toloka-kit 1.2.3:

- POST /v1/pools is not idempotent (no key); pools are searchable by project, not metadata;
- POST /v1/tasks runs as an async operation; a repeated `operation_id` answers 409
  OPERATION_ALREADY_EXISTS; `skip_invalid_items=false` creates all or nothing; unknown or
  missing input fields fail the operation with TASK_VALIDATE log entries;
- an empty pool cannot be opened (409 EMPTY_POOL); open/close of a pool already in that
  state answers 204; operations finish by the time they are first polled;
- assignment ids are handed out when a suite is issued, so they do not follow submission
  order (`work` shuffles them on purpose), and several suites share a `submitted` instant;
- PATCH of an assignment only allows SUBMITTED->ACCEPTED/REJECTED and REJECTED->ACCEPTED,
  anything else is 409 INAPPROPRIATE_STATUS;
- POST /v1/skills is not idempotent (a second skill of the same name is created);
  GET /v1/skills filters by exact `name`; PUT /v1/user-skills sets a Toloker's value
  (0..100) of an existing skill; a pool filter naming an unknown skill is a 400.

The OpenAPI spec Toloka publishes (github.com/Toloka/docs en/api/reference/fullApi.yaml,
OpenAPI 3.0.1, with its overview in parts/api/info-description.md) is not kept under
tests/: no license file for that repository was found, so no copy is made and nothing is
validated against it mechanically. The schema facts this fake follows from it: the error
body {request_id, code, message, payload}; 429 for the per-method quotas (pool creation
20 a minute / 100 a day) with the window in `payload.interval` (toloka-kit TolokaRetry
reads MIN / HOUR / DAY); the `requester` tag (GET /v1/requester: id, balance,
public_name, company, as toloka-kit's `Requester`); `limit` at most 300 for pools.

`work()` plays the crowd: distinct Tolokers (a finite crowd) answer every open task to its
overlap, in task suites of the pool's `mixer_config.real_tasks_count`, never a task in
`unavailable_for`, and only if the pool's `filter` admits them when the suite is issued
(skill conditions are evaluated against the user-skills set so far; the fake has no
profile or computed data, so such conditions admit everyone).
"""

from __future__ import annotations

import itertools
import json
import operator
import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import parse_qs

import httpx
import respx
from pydantic import SecretStr

from crowdloop.connectors._http import RetryPolicy
from crowdloop.connectors.base import Connector
from crowdloop.connectors.testing import Harness, Op, Route, Wrap
from crowdloop.connectors.toloka.connector import TolokaConnector, TolokaOptions
from crowdloop.connectors.toloka.credentials import TolokaCredentials
from crowdloop.connectors.toloka.models import INPUT_FIELDS, OUTPUT_FIELD
from crowdloop.models.domain import BatchRef, Stage, TaskItem

BASE = "https://toloka.test/api"
API_KEY = "AQAD-fake.toloka-api-key.0123456789"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
PROJECTS = {
    Stage.COMPARE: ("101", "compare"),
    Stage.RESPONSES: ("102", "write_response"),
    Stage.PROMPTS: ("103", "write_prompt"),
    Stage.VERIFY: ("104", "verify"),
}
ANSWERS: dict[str, Callable[[random.Random], Any]] = {
    "choice": lambda rng: rng.choice(["left", "right", "tie"]),
    "text": lambda rng: f"1. Baikal 2. Tanganyika ({rng.randint(0, 999)})",
    "verdict": lambda rng: rng.choice(["accept", "reject"]),
}
CROWD = 500  # Tolokers `work` can call on
COMPARE: dict[str, Callable[[float, float], bool]] = {
    "EQ": operator.eq,
    "NE": operator.ne,
    "GT": operator.gt,
    "GTE": operator.ge,
    "LT": operator.lt,
    "LTE": operator.le,
}


def toloka_time(when: datetime) -> str:
    """Toloka's UTC time format, milliseconds, no offset: 2024-05-01T12:00:00.123."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def error(status: int, code: str, message: str, payload: Any = None) -> httpx.Response:
    body = {"request_id": f"req-{code.lower()}", "code": code, "message": message}
    if payload is not None:
        body["payload"] = payload
    return httpx.Response(status, json=body)


def project_json(project_id: str, kind: str) -> dict[str, Any]:
    inputs = ("crowdloop_key", "kind", "instruction", *INPUT_FIELDS[kind])
    return {
        "id": project_id,
        "public_name": f"crowdloop {kind}",
        "status": "ACTIVE",
        "assignments_issuing_type": "AUTOMATED",
        "task_spec": {
            "input_spec": {
                name: {"type": "string", "required": True, "hidden": name == "crowdloop_key"}
                for name in inputs
            },
            "output_spec": {OUTPUT_FIELD[kind]: {"type": "string", "required": True}},
            "view_spec": {"type": "tb", "config": {}},
        },
    }


class FakeToloka:
    """In-memory Toloka: `router` serves the API, the other methods inspect or drive it."""

    def __init__(self, *, api_key: str = API_KEY, seed: int = 7, balance: float = 120.5) -> None:
        self.balance = balance
        self.api_key = api_key
        self.rng = random.Random(seed)
        self.projects = {pid: project_json(pid, kind) for pid, kind in PROJECTS.values()}
        self.pools: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.logs: dict[str, list[dict[str, Any]]] = {}
        self.assignments: dict[str, dict[str, Any]] = {}
        self.restrictions: dict[tuple[str, str, str | None, str | None], dict[str, Any]] = {}
        self.skills: dict[str, dict[str, Any]] = {}
        self.user_skills: dict[tuple[str, str], dict[str, Any]] = {}  # (skill, user) -> value
        self.answered: dict[str, set[str]] = {}  # task id -> Tolokers who answered it
        self.clock = NOW
        self._ids = itertools.count(1)
        self.router = respx.Router(base_url=BASE, assert_all_called=False)
        self._mount()

    # --- what the contract and the tests look at -------------------------------------------

    def created(self) -> tuple[int, int]:
        return len(self.pools), len(self.tasks)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.router.handler)

    def tick(self, ms: int = 1) -> str:
        self.clock += timedelta(milliseconds=ms)
        return toloka_time(self.clock)

    def add_assignment(
        self,
        pool_id: str,
        task_ids: list[str],
        *,
        user_id: str,
        submitted: str,
        assignment_id: str | None = None,
        solutions: list[dict[str, Any]] | None = None,
        status: str = "SUBMITTED",
    ) -> dict[str, Any]:
        tasks = [self.tasks[t] for t in task_ids]
        if solutions is None:
            solutions = []
            for task in tasks:
                field = OUTPUT_FIELD[task["input_values"]["kind"]]
                solutions.append({"output_values": {field: ANSWERS[field](self.rng)}})
        assignment_id = assignment_id or f"{int(pool_id):010x}--{self.rng.getrandbits(96):024x}"
        assignment = {
            "id": assignment_id,
            "task_suite_id": f"{int(pool_id):010x}--{self.rng.getrandbits(96):024x}",
            "pool_id": pool_id,
            "user_id": user_id,
            "status": status,
            "reward": self.pools[pool_id]["reward_per_assignment"],
            "tasks": [
                {"id": t["id"], "input_values": t["input_values"], "overlap": t["overlap"]}
                for t in tasks
            ],
            "solutions": solutions,
            "mixed": True,
            "automerged": False,
            "created": toloka_time(_parse_time(submitted) - timedelta(seconds=40)),
            "submitted": submitted,
        }
        self.assignments[assignment_id] = assignment
        for task_id in task_ids:
            self.answered.setdefault(task_id, set()).add(user_id)
        return assignment

    def admits(self, pool_id: str, user_id: str) -> bool:
        """Whether the pool's filter lets the Toloker have its tasks right now."""
        found = self.pools[pool_id].get("filter")
        return found is None or self._matches(found, user_id)

    def _matches(self, node: dict[str, Any], user_id: str) -> bool:
        if "and" in node:
            return all(self._matches(n, user_id) for n in node["and"])
        if "or" in node:
            return any(self._matches(n, user_id) for n in node["or"])
        if node.get("category") != "skill":
            return True  # no profile or computed data in the fake
        held = self.user_skills.get((str(node["key"]), user_id))
        value, wanted = (held["exact_value"] if held else None), node.get("value")
        if wanted is None:  # filter-skill.md: EQ without a value selects Tolokers without it
            return (node["operator"] == "EQ") == (value is None)
        return value is not None and COMPARE[node["operator"]](value, float(wanted))

    def work(self, pool_id: str) -> int:
        """The crowd answers the tasks of an open pool up to their overlap, as far as the
        Tolokers the pool admits can; returns the answers made."""
        pool = self.pools[pool_id]
        if pool["status"] != "OPEN":
            return 0  # a closed pool hands out nothing (close-pool.md)
        suite = pool["mixer_config"]["real_tasks_count"]
        made = 0
        for round_no in range(CROWD):
            user = f"toloker-{round_no:03d}"
            if not self.admits(pool_id, user):
                continue
            open_tasks = [
                t
                for t in self.tasks.values()
                if t["pool_id"] == pool_id
                and len(self.answered.get(t["id"], ())) < t["overlap"]
                and user not in t["unavailable_for"]
                and user not in self.answered.get(t["id"], ())
            ]
            if not open_tasks:
                if all(
                    len(self.answered.get(t["id"], ())) >= t["overlap"]
                    for t in self.tasks.values()
                    if t["pool_id"] == pool_id
                ):
                    return made
                continue
            for start in range(0, len(open_tasks), suite):
                chunk = [t["id"] for t in open_tasks[start : start + suite]]
                # Every other suite shares its `submitted` instant with the one before.
                submitted = self.tick(0 if start % (2 * suite) else 1)
                self.add_assignment(pool_id, chunk, user_id=user, submitted=submitted)
                made += len(chunk)
        return made  # the crowd ran out: what is left stays open

    # --- the API -------------------------------------------------------------------------------

    def _mount(self) -> None:
        routes: list[tuple[str, str, Callable[..., httpx.Response]]] = [
            ("GET", r"^/v1/requester$", self._get_requester),
            ("GET", r"^/v1/projects/(?P<project_id>[^/]+)$", self._get_project),
            ("POST", r"^/v1/pools$", self._create_pool),
            ("GET", r"^/v1/pools$", self._list_pools),
            ("GET", r"^/v1/pools/(?P<pool_id>[^/]+)$", self._get_pool),
            ("POST", r"^/v1/pools/(?P<pool_id>[^/]+)/open$", self._open_pool),
            ("POST", r"^/v1/pools/(?P<pool_id>[^/]+)/close$", self._close_pool),
            ("POST", r"^/v1/tasks$", self._create_tasks),
            ("GET", r"^/v1/tasks$", self._list_tasks),
            ("GET", r"^/v1/operations/(?P<op_id>[^/]+)/log$", self._operation_log),
            ("GET", r"^/v1/operations/(?P<op_id>[^/]+)$", self._get_operation),
            ("GET", r"^/v1/assignments$", self._list_assignments),
            ("GET", r"^/v1/assignments/(?P<assignment_id>[^/]+)$", self._get_assignment),
            ("PATCH", r"^/v1/assignments/(?P<assignment_id>[^/]+)$", self._patch_assignment),
            ("PUT", r"^/v1/user-restrictions$", self._set_restriction),
            ("POST", r"^/v1/skills$", self._create_skill),
            ("GET", r"^/v1/skills$", self._list_skills),
            ("PUT", r"^/v1/user-skills$", self._set_user_skill),
        ]
        for method, path, handler in routes:
            self.router.route(method=method, path__regex=path).mock(
                side_effect=self._authorized(handler)
            )

    def _authorized(self, handler: Callable[..., httpx.Response]) -> Callable[..., httpx.Response]:
        def serve(request: httpx.Request, **kwargs: str) -> httpx.Response:
            if request.headers.get("authorization") != f"ApiKey {self.api_key}":
                return error(401, "AUTHENTICATION_ERROR", "Authentication failed")
            return handler(request, **kwargs)

        return serve

    @staticmethod
    def _params(request: httpx.Request) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(request.url.query.decode()).items()}

    @staticmethod
    def _page(items: list[dict[str, Any]], params: dict[str, str], maximum: int) -> httpx.Response:
        limit = int(params.get("limit", "50"))
        if not 1 <= limit <= maximum:
            return error(400, "VALIDATION_ERROR", "Validation failed", {"limit": limit})
        return httpx.Response(200, json={"items": items[:limit], "has_more": len(items) > limit})

    def _new_operation(self, op_id: str, op_type: str, **extra: Any) -> dict[str, Any]:
        operation = {
            "id": op_id,
            "type": op_type,
            "status": "PENDING",
            "submitted": toloka_time(self.clock),
            "progress": 0,
            **extra,
        }
        self.operations[op_id] = operation
        return operation

    # the account

    def _get_requester(self, request: httpx.Request) -> httpx.Response:
        """GET /v1/requester; fields of toloka-kit's `Requester` (src/client/requester.py):
        id, balance (dollars), public_name by language, company."""
        return httpx.Response(
            200,
            json={
                "id": "requester-0001",
                "balance": self.balance,
                "public_name": {"EN": "crowdloop tests"},
                "company": {"id": "company-01", "superintendent_id": "requester-0001"},
            },
        )

    # projects and pools

    def _get_project(self, request: httpx.Request, project_id: str) -> httpx.Response:
        if project_id not in self.projects:
            return error(404, "DOES_NOT_EXIST", "There are no results for such parameters")
        return httpx.Response(200, json=self.projects[project_id])

    def _create_pool(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        required = [
            "project_id",
            "private_name",
            "may_contain_adult_content",
            "will_expire",
            "reward_per_assignment",
            "assignment_max_duration_seconds",
            "defaults",
        ]
        missing = {k: {"code": "VALUE_REQUIRED"} for k in required if k not in body}
        if body.get("project_id") not in self.projects:
            missing["project_id"] = {"code": "ENTITY_DOES_NOT_EXIST"}
        if not isinstance(body.get("reward_per_assignment"), int | float) or (
            body["reward_per_assignment"] < 0.01
        ):
            missing["reward_per_assignment"] = {"code": "VALUE_LESS_THAN_MIN"}
        if "mixer_config" not in body:
            missing["mixer_config"] = {"code": "MIXER_CONFIG_REQUIRED"}
        unknown = [k for k in _skill_keys(body.get("filter")) if k not in self.skills]
        if unknown:
            missing["filter"] = {"code": "ENTITY_DOES_NOT_EXIST", "skills": ",".join(unknown)}
        if missing:
            return error(400, "VALIDATION_ERROR", "Validation failed", missing)
        pool_id = str(1_000_000 + next(self._ids))
        pool = {
            **body,
            "id": pool_id,
            "status": "CLOSED",
            "created": toloka_time(self.clock),
            "type": "REGULAR",
            "owner": {"id": "req-1", "myself": True},
        }
        self.pools[pool_id] = pool
        return httpx.Response(201, json=pool)

    def _list_pools(self, request: httpx.Request) -> httpx.Response:
        params = self._params(request)
        pools = sorted(self.pools.values(), key=lambda p: int(p["id"]))
        if "project_id" in params:
            pools = [p for p in pools if p["project_id"] == params["project_id"]]
        if "status" in params:
            pools = [p for p in pools if p["status"] == params["status"]]
        if "id_gt" in params:
            pools = [p for p in pools if int(p["id"]) > int(params["id_gt"])]
        return self._page(pools, params, 300)

    def _get_pool(self, request: httpx.Request, pool_id: str) -> httpx.Response:
        if pool_id not in self.pools:
            return error(404, "DOES_NOT_EXIST", "There are no results for such parameters")
        return httpx.Response(200, json=self.pools[pool_id])

    def _open_pool(self, request: httpx.Request, pool_id: str) -> httpx.Response:
        pool = self.pools.get(pool_id)
        if pool is None:
            return error(404, "DOES_NOT_EXIST", "There are no results for such parameters")
        if pool["status"] == "OPEN":
            return httpx.Response(204)
        if not any(t["pool_id"] == pool_id for t in self.tasks.values()):
            return error(409, "EMPTY_POOL", "Pool has no tasks")
        pool.update(status="OPEN", last_started=toloka_time(self.clock))
        op = self._new_operation(self._uuid(), "POOL.OPEN", parameters={"pool_id": pool_id})
        return httpx.Response(202, json=op)

    def _close_pool(self, request: httpx.Request, pool_id: str) -> httpx.Response:
        pool = self.pools.get(pool_id)
        if pool is None:
            return error(404, "DOES_NOT_EXIST", "There are no results for such parameters")
        if pool["status"] == "CLOSED":
            return httpx.Response(204)
        pool.update(status="CLOSED", last_close_reason="MANUAL")
        op = self._new_operation(self._uuid(), "POOL.CLOSE", parameters={"pool_id": pool_id})
        return httpx.Response(202, json=op)

    def _uuid(self) -> str:
        return f"{self.rng.getrandbits(128):032x}"

    # tasks and operations

    def _create_tasks(self, request: httpx.Request) -> httpx.Response:
        params = self._params(request)
        op_id = params.get("operation_id")
        if params.get("async_mode") != "true" or not op_id:
            return error(400, "VALIDATION_ERROR", "the fake supports async uploads with an id")
        if op_id in self.operations:
            return error(409, "OPERATION_ALREADY_EXISTS", f"Operation {op_id} already exists")
        body = json.loads(request.content)
        tasks = body if isinstance(body, list) else [body]
        log: list[dict[str, Any]] = []
        valid: list[dict[str, Any]] = []
        for task in tasks:
            problems = self._validate_task(task, allow_defaults=params.get("allow_defaults"))
            if problems:
                log.append(
                    {"type": "TASK_VALIDATE", "success": False, "input": task, "output": problems}
                )
            else:
                valid.append(task)
        failed = bool(log) and params.get("skip_invalid_items") != "true"
        pools_to_open: set[str] = set()
        if not failed:
            for task in valid:
                task_id = f"{int(task['pool_id']):010x}--{next(self._ids):024x}"
                self.tasks[task_id] = {
                    "id": task_id,
                    "pool_id": task["pool_id"],
                    "input_values": task["input_values"],
                    "overlap": task["overlap"],
                    "remaining_overlap": task["overlap"],
                    "unavailable_for": task.get("unavailable_for", []),
                    "infinite_overlap": False,
                    "created": toloka_time(self.clock),
                }
                log.append(
                    {
                        "type": "TASK_CREATE",
                        "success": True,
                        "input": task,
                        "output": {"task_id": task_id},
                    }
                )
                pools_to_open.add(task["pool_id"])
            if params.get("open_pool") == "true":
                for pool_id in pools_to_open:
                    self.pools[pool_id]["status"] = "OPEN"
        op = self._new_operation(
            op_id,
            "TASK.BATCH_CREATE",
            parameters={
                "open_pool": params.get("open_pool") == "true",
                "allow_defaults": params.get("allow_defaults") == "true",
                "skip_invalid_items": params.get("skip_invalid_items") == "true",
            },
            details={
                "total_count": len(tasks),
                "valid_count": len(valid),
                "not_valid_count": len(tasks) - len(valid),
                "success_count": 0 if failed else len(valid),
                "failed_count": len(tasks) if failed else len(tasks) - len(valid),
            },
        )
        op["_outcome"] = "FAIL" if failed else "SUCCESS"
        self.logs[op_id] = log
        return httpx.Response(202, json={k: v for k, v in op.items() if not k.startswith("_")})

    def _validate_task(self, task: dict[str, Any], allow_defaults: str | None) -> dict[str, Any]:
        pool = self.pools.get(str(task.get("pool_id")))
        if pool is None:
            return {"pool_id": {"code": "ENTITY_DOES_NOT_EXIST", "message": "no such pool"}}
        if pool["status"] == "ARCHIVED":
            return {"pool_id": {"code": "INAPPROPRIATE_STATUS", "message": "pool archived"}}
        spec = self.projects[pool["project_id"]]["task_spec"]["input_spec"]
        values = task.get("input_values") or {}
        problems: dict[str, Any] = {}
        for name in spec:
            if not isinstance(values.get(name), str):
                problems[f"input_values.{name}"] = {
                    "code": "VALUE_REQUIRED",
                    "message": "Value must be present and not equal to null",
                }
        for name in values:
            if name not in spec:
                problems[f"input_values.{name}"] = {
                    "code": "VALUE_NOT_ALLOWED",
                    "message": "Field is not in the project's input spec",
                }
        if allow_defaults != "true" and not isinstance(task.get("overlap"), int):
            problems["overlap"] = {"code": "VALUE_REQUIRED", "message": "overlap is required"}
        if "known_solutions" in task:
            problems["known_solutions"] = {"code": "UNEXPECTED", "message": "crowdloop sent one"}
        return problems

    def _list_tasks(self, request: httpx.Request) -> httpx.Response:
        params = self._params(request)
        if "pool_id" not in params:
            return error(400, "VALIDATION_ERROR", "pool_id is required")
        tasks = sorted(
            (t for t in self.tasks.values() if t["pool_id"] == params["pool_id"]),
            key=lambda t: t["id"],
        )
        if "id_gt" in params:
            tasks = [t for t in tasks if t["id"] > params["id_gt"]]
        return self._page(tasks, params, 100_000)

    def _get_operation(self, request: httpx.Request, op_id: str) -> httpx.Response:
        op = self.operations.get(op_id)
        if op is None:
            return error(404, "DOES_NOT_EXIST", "There are no results for such parameters")
        if op["status"] in ("PENDING", "RUNNING"):
            op.update(
                status=op.pop("_outcome", "SUCCESS"),
                progress=100,
                started=op["submitted"],
                finished=toloka_time(self.clock),
            )
        return httpx.Response(200, json={k: v for k, v in op.items() if not k.startswith("_")})

    def _operation_log(self, request: httpx.Request, op_id: str) -> httpx.Response:
        if op_id not in self.logs:
            return error(404, "DOES_NOT_EXIST", "There are no results for such parameters")
        return httpx.Response(200, json=self.logs[op_id])

    # assignments and Tolokers

    def _list_assignments(self, request: httpx.Request) -> httpx.Response:
        params = self._params(request)
        if "pool_id" not in params:
            return error(400, "VALIDATION_ERROR", "task_id, pool_id or task_suite_id required")
        items = [a for a in self.assignments.values() if a["pool_id"] == params["pool_id"]]
        if "status" in params:
            wanted = set(params["status"].split(","))
            items = [a for a in items if a["status"] in wanted]
        for name, keep in (
            ("submitted_gt", lambda a, t: _parse_time(a["submitted"]) > t),
            ("submitted_gte", lambda a, t: _parse_time(a["submitted"]) >= t),
            ("submitted_lte", lambda a, t: _parse_time(a["submitted"]) <= t),
        ):
            if name in params:
                bound = _parse_time(params[name])
                items = [a for a in items if keep(a, bound)]
        if "id_gt" in params:
            items = [a for a in items if a["id"] > params["id_gt"]]
        sort = params.get("sort", "id")
        if sort == "id":
            items.sort(key=lambda a: a["id"])
        elif sort == "submitted,id":
            items.sort(key=lambda a: (_parse_time(a["submitted"]), a["id"]))
        else:
            return error(400, "VALIDATION_ERROR", f"the fake does not sort by {sort}")
        return self._page(items, params, 100_000)

    def _get_assignment(self, request: httpx.Request, assignment_id: str) -> httpx.Response:
        if assignment_id not in self.assignments:
            return error(404, "DOES_NOT_EXIST", "There are no results for such parameters")
        return httpx.Response(200, json=self.assignments[assignment_id])

    def _patch_assignment(self, request: httpx.Request, assignment_id: str) -> httpx.Response:
        assignment = self.assignments.get(assignment_id)
        if assignment is None:
            return error(404, "DOES_NOT_EXIST", "There are no results for such parameters")
        body = json.loads(request.content)
        target, current = body.get("status"), assignment["status"]
        allowed = {("SUBMITTED", "ACCEPTED"), ("SUBMITTED", "REJECTED"), ("REJECTED", "ACCEPTED")}
        if (current, target) not in allowed:
            return error(
                409,
                "INAPPROPRIATE_STATUS",
                "This or related resource is in inappropriate status, operation is not allowed",
                {"appropriate_statuses": ["SUBMITTED"]},
            )
        if target == "REJECTED" and not body.get("public_comment"):
            return error(400, "VALIDATION_ERROR", "public_comment is required to reject")
        assignment.update(
            status=target,
            public_comment=body.get("public_comment"),
            **{target.lower(): self.tick()},
        )
        return httpx.Response(
            200, json={"status": target, "public_comment": body.get("public_comment")}
        )

    def _set_restriction(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        scope = body.get("scope")
        need = {"PROJECT": "project_id", "POOL": "pool_id"}.get(scope)
        if scope not in ("ALL_PROJECTS", "PROJECT", "POOL") or (need and not body.get(need)):
            return error(400, "VALIDATION_ERROR", "Validation failed", {"scope": scope})
        if len(body.get("private_comment", "")) > 499:
            return error(400, "VALIDATION_ERROR", "private_comment is longer than 499")
        key = (scope, body["user_id"], body.get("project_id"), body.get("pool_id"))
        restriction = self.restrictions.setdefault(
            key, {"id": str(len(self.restrictions) + 1), "created": toloka_time(self.clock)}
        )
        restriction.update(body)
        return httpx.Response(200, json=restriction)

    # skills

    def _create_skill(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if not isinstance(body.get("name"), str) or not body["name"]:
            return error(400, "VALIDATION_ERROR", "Validation failed", {"name": "VALUE_REQUIRED"})
        skill_id = str(40_000 + next(self._ids))
        skill = {
            "hidden": True,
            **body,
            "id": skill_id,
            "deprecated": False,
            "training": False,
            "global": False,
            "owner": {"id": "req-1", "myself": True},
            "created": toloka_time(self.clock),
        }
        self.skills[skill_id] = skill
        return httpx.Response(201, json=skill)

    def _list_skills(self, request: httpx.Request) -> httpx.Response:
        params = self._params(request)
        skills = sorted(self.skills.values(), key=lambda k: int(k["id"]))
        if "name" in params:
            skills = [k for k in skills if k["name"] == params["name"]]
        if "id_gt" in params:
            skills = [k for k in skills if int(k["id"]) > int(params["id_gt"])]
        return self._page(skills, params, 300)

    def _set_user_skill(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        skill_id, user_id, value = body.get("skill_id"), body.get("user_id"), body.get("value")
        if str(skill_id) not in self.skills:
            return error(404, "DOES_NOT_EXIST", "There are no results for such parameters")
        if not user_id or not isinstance(value, int | float) or not 0 <= value <= 100:
            return error(400, "VALIDATION_ERROR", "Validation failed", {"value": value})
        key = (str(skill_id), str(user_id))
        record = self.user_skills.setdefault(
            key,
            {
                "id": str(len(self.user_skills) + 1),
                "skill_id": key[0],
                "user_id": key[1],
                "created": toloka_time(self.clock),
            },
        )
        record.update(value=round(value), exact_value=value, modified=self.tick())
        return httpx.Response(200, json=record)


def _skill_keys(node: Any) -> list[str]:
    """The skill ids a pool filter refers to."""
    if not isinstance(node, dict):
        return []
    children = node.get("and", node.get("or"))
    if isinstance(children, list):
        return [k for child in children for k in _skill_keys(child)]
    return [str(node["key"])] if node.get("category") == "skill" else []


def toloka_options(**overrides: Any) -> TolokaOptions:
    base: dict[str, Any] = {
        "project_ids": {stage: pid for stage, (pid, _) in PROJECTS.items()},
        "tasks_per_suite": 2,
        "page_limit": 2,
        "task_page_limit": 3,
    }
    return TolokaOptions.model_validate(base | overrides)


class TolokaHarness(Harness):
    name = "toloka"
    routes: ClassVar[Mapping[Op, Route]] = {
        Op.CREATE_BATCH: Route("POST", r"^/api/v1/pools$"),
        Op.ADD_ITEMS: Route("POST", r"^/api/v1/tasks$"),
        Op.LIST_SUBMISSIONS: Route("GET", r"^/api/v1/assignments$"),
    }

    def __init__(self) -> None:
        super().__init__()
        self.secret = API_KEY
        self.fake = FakeToloka()

    def connector(self, wrap: Wrap | None = None) -> Connector:
        credentials = TolokaCredentials(api_key=SecretStr(self.secret), base_url=BASE)
        transport: httpx.BaseTransport = self.fake.transport()
        client = credentials.get_client(
            timeout_s=5.0,
            retry=RetryPolicy(attempts=4),
            transport=wrap(transport) if wrap else transport,
            sleep=self.sleeps.append,
        )
        return TolokaConnector(client, toloka_options(), now=lambda: NOW)

    def answer(self, connector: Connector, batch: BatchRef, items: list[TaskItem]) -> int:
        return self.fake.work(batch.external_id)

    def created(self) -> tuple[int, int]:
        return self.fake.created()


def make_harness() -> Harness:
    return TolokaHarness()
