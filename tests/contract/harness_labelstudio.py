"""Label Studio under the contract suite: a stateful fake of its REST API on a respx router.

The fake keeps projects, tasks and annotations in memory and answers in the shapes of the
open-source server (1.23): DRF page-number pages for projects (`count`/`next`/`results`),
the data manager's task list (`tasks`/`total`, 404 past the last page), a synchronous
import that returns `task_ids`, JWT personal access tokens exchanged at
`/api/token/refresh/` for 5-minute access tokens, legacy `Token` auth, and a `Date`
header on every answer. Like the real server it deduplicates nothing.
"""

from __future__ import annotations

import base64
import email.utils
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx
import respx
from pydantic import SecretStr

from crowdloop.connectors._http import RetryPolicy
from crowdloop.connectors.base import Connector
from crowdloop.connectors.labelstudio.connector import LabelStudioConnector
from crowdloop.connectors.labelstudio.credentials import LabelStudioCredentials
from crowdloop.connectors.testing import Harness, Op, Route, Wrap
from crowdloop.models.domain import BatchRef, TaskItem

BASE = "http://ls.test"
LEGACY_TOKEN = "0123456789abcdef0123456789abcdef01234567"
ACCESS_TTL_S = 300


def _b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def make_jwt(claims: dict[str, Any]) -> str:
    """A JWT-shaped token (the fake checks tokens by value, not by signature)."""
    return f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(claims)}.c2lnbmF0dXJl"


PERSONAL_TOKEN = make_jwt(
    {"token_type": "refresh", "exp": 4_102_444_800, "jti": "pat-1", "user_id": 1}
)

# Only crowdloop's own `$variables` matter for the import check.
_VARIABLE = re.compile(r'value="\$([A-Za-z_][A-Za-z0-9_]*)"')


class ServerClock:
    """The fake's time in epoch seconds: a fixed start, a millisecond further at each reading
    (never the machine's clock, so a loaded machine changes nothing)."""

    def __init__(self, now: float = 1_900_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


@dataclass
class FakeLabelStudio:
    """The state behind the router; tests read and change it directly."""

    clock: Any = field(default_factory=ServerClock)  # the server's clock (epoch seconds)
    projects: dict[int, dict[str, Any]] = field(default_factory=dict)
    tasks: dict[int, dict[str, Any]] = field(default_factory=dict)
    access_tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry
    refreshes: int = 0
    legacy_enabled: bool = True
    _ids: dict[str, itertools.count[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._ids = {"project": itertools.count(1), "task": itertools.count(1)}
        self._ids["annotation"] = itertools.count(1)
        self._ids["access"] = itertools.count(1)
        self.router = respx.Router(base_url=BASE, assert_all_called=False)
        r = self.router
        r.post("/api/token/refresh/", name="refresh").mock(side_effect=self._refresh)
        r.route(method="POST", path="/api/projects/", name="create_project").mock(
            side_effect=self._create_project
        )
        r.route(method="GET", path="/api/projects/", name="list_projects").mock(
            side_effect=self._list_projects
        )
        r.route(
            method="GET", path__regex=r"^/api/projects/(?P<pid>\d+)/$", name="get_project"
        ).mock(side_effect=self._get_project)
        r.route(
            method="PATCH", path__regex=r"^/api/projects/(?P<pid>\d+)/$", name="patch_project"
        ).mock(side_effect=self._patch_project)
        r.route(
            method="POST", path__regex=r"^/api/projects/(?P<pid>\d+)/import$", name="import"
        ).mock(side_effect=self._import)
        r.route(method="GET", path="/api/tasks/", name="list_tasks").mock(
            side_effect=self._list_tasks
        )

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.router.handler)

    # --- helpers tests use ---------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def annotate(
        self,
        task_id: int,
        user_id: int,
        result: Any,
        *,
        was_cancelled: bool = False,
        age_s: float = 60.0,
        annotation_id: int | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        created = (self.now() - timedelta(seconds=age_s)).isoformat().replace("+00:00", "Z")
        annotation = {
            "id": annotation_id or next(self._ids["annotation"]),
            "result": result,
            "completed_by": user_id,
            "was_cancelled": was_cancelled,
            "ground_truth": False,
            "created_at": created,
            "updated_at": created,
            "lead_time": 4.2,
            "task": task_id,
            "project": self.tasks[task_id]["project"],
            **extra,
        }
        self.tasks[task_id]["annotations"].append(annotation)
        return annotation

    def project_tasks(self, project_id: int) -> list[dict[str, Any]]:
        return [t for t in self.tasks.values() if t["project"] == project_id]

    # --- plumbing ------------------------------------------------------------------------

    def _answer(self, status: int, body: Any = None) -> httpx.Response:
        headers = {"Date": email.utils.formatdate(self.clock(), usegmt=True)}
        if body is None:
            return httpx.Response(status, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    def _authorized(self, request: httpx.Request) -> bool:
        value = request.headers.get("authorization", "")
        scheme, _, token = value.partition(" ")
        if scheme == "Bearer":
            expiry = self.access_tokens.get(token)
            return expiry is not None and self.clock() < expiry
        return scheme == "Token" and token == LEGACY_TOKEN and self.legacy_enabled

    def _denied(self) -> httpx.Response:
        return self._answer(401, {"detail": "Authentication credentials were not provided."})

    def _refresh(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content or b"{}")
        if body.get("refresh") != PERSONAL_TOKEN:
            return self._answer(
                401, {"detail": "Token is invalid or expired", "code": "token_not_valid"}
            )
        self.refreshes += 1
        expiry = self.clock() + ACCESS_TTL_S
        access = make_jwt(
            {"token_type": "access", "exp": int(expiry), "jti": f"a{next(self._ids['access'])}"}
        )
        self.access_tokens[access] = expiry
        return self._answer(200, {"access": access})

    def _project_json(self, project: dict[str, Any]) -> dict[str, Any]:
        tasks = self.project_tasks(project["id"])
        annotations = [a for t in tasks for a in t["annotations"]]
        return {
            **project,
            "task_number": len(tasks),
            "total_annotations_number": sum(1 for a in annotations if not a.get("was_cancelled")),
            "skipped_annotations_number": sum(1 for a in annotations if a.get("was_cancelled")),
            "finished_task_number": sum(
                1 for t in tasks if len(t["annotations"]) >= project["maximum_annotations"]
            ),
            "num_tasks_with_annotations": sum(1 for t in tasks if t["annotations"]),
        }

    # --- projects ------------------------------------------------------------------------

    def _create_project(self, request: httpx.Request) -> httpx.Response:
        if not self._authorized(request):
            return self._denied()
        body = json.loads(request.content)
        title = body.get("title", "")
        if not 3 <= len(title) <= 50:
            return self._answer(
                400, {"title": ["Ensure this field has no more than 50 characters."]}
            )
        project_id = next(self._ids["project"])
        self.projects[project_id] = {
            "id": project_id,
            "title": title,
            "description": body.get("description", ""),
            "label_config": body.get("label_config", "<View></View>"),
            "expert_instruction": body.get("expert_instruction", ""),
            "maximum_annotations": int(body.get("maximum_annotations", 1)),
            "is_published": bool(body.get("is_published", False)),
            "created_at": self.now().isoformat(),
        }
        return self._answer(201, self._project_json(self.projects[project_id]))

    def _list_projects(self, request: httpx.Request) -> httpx.Response:
        if not self._authorized(request):
            return self._denied()
        title = request.url.params.get("title", "").lower()
        page = int(request.url.params.get("page", 1))
        size = int(request.url.params.get("page_size", 30))
        found = [
            self._project_json(p)
            for p in sorted(self.projects.values(), key=lambda p: -p["id"])
            if title in p["title"].lower()
        ]
        window = found[(page - 1) * size : page * size]
        if page > 1 and not window:
            return self._answer(404, {"detail": "Invalid page."})
        more = page * size < len(found)
        return self._answer(
            200,
            {
                "count": len(found),
                "next": f"{BASE}/api/projects/?page={page + 1}" if more else None,
                "previous": None,
                "results": window,
            },
        )

    def _get_project(self, request: httpx.Request, pid: str) -> httpx.Response:
        if not self._authorized(request):
            return self._denied()
        project = self.projects.get(int(pid))
        if project is None:
            return self._answer(404, {"detail": "Not found."})
        return self._answer(200, self._project_json(project))

    def _patch_project(self, request: httpx.Request, pid: str) -> httpx.Response:
        if not self._authorized(request):
            return self._denied()
        project = self.projects.get(int(pid))
        if project is None:
            return self._answer(404, {"detail": "Not found."})
        body = json.loads(request.content)
        for name in ("maximum_annotations", "is_published", "title", "description"):
            if name in body:
                project[name] = body[name]
        if "maximum_annotations" in body:  # every task takes the project's overlap
            for task in self.project_tasks(project["id"]):
                task["overlap"] = body["maximum_annotations"]
        return self._answer(200, self._project_json(project))

    # --- tasks ---------------------------------------------------------------------------

    def _import(self, request: httpx.Request, pid: str) -> httpx.Response:
        if not self._authorized(request):
            return self._denied()
        project = self.projects.get(int(pid))
        if project is None:
            return self._answer(404, {"detail": "Not found."})
        body = json.loads(request.content)
        needed = set(_VARIABLE.findall(project["label_config"]))
        for index, task in enumerate(body):
            missing = needed - set(task.get("data", {}))
            if missing:
                return self._answer(
                    400,
                    {
                        "validation_errors": {
                            "non_field_errors": [
                                f"Task {index}: data keys {sorted(missing)} are missing"
                            ]
                        }
                    },
                )
        ids = []
        for task in body:
            task_id = next(self._ids["task"])
            self.tasks[task_id] = {
                "id": task_id,
                "project": project["id"],
                "data": task["data"],
                "meta": task.get("meta", {}),
                "overlap": project["maximum_annotations"],
                "annotations": [],
                "created_at": self.now().isoformat(),
            }
            ids.append(task_id)
        answer: dict[str, Any] = {
            "task_count": len(ids),
            "annotation_count": 0,
            "prediction_count": 0,
            "duration": 0.01,
            "file_upload_ids": [],
            "could_be_tasks_list": False,
            "found_formats": [],
            "data_columns": [],
        }
        if request.url.params.get("return_task_ids") in ("true", "1", "True"):
            answer["task_ids"] = ids
        return self._answer(201, answer)

    def _list_tasks(self, request: httpx.Request) -> httpx.Response:
        if not self._authorized(request):
            return self._denied()
        params = request.url.params
        project_id = int(params.get("project", 0))
        if project_id not in self.projects:
            return self._answer(404, {"detail": "Not found."})
        page = int(params.get("page", 1))
        size = int(params.get("page_size", 100))
        tasks = sorted(self.project_tasks(project_id), key=lambda t: -t["id"])  # newest first
        window = tasks[(page - 1) * size : page * size]
        if page > 1 and not window:
            return self._answer(404, {"detail": "Invalid page."})
        all_fields = params.get("fields") == "all"
        rendered = []
        for task in window:
            item = {
                "id": task["id"],
                "data": task["data"],
                "meta": task["meta"],
                "overlap": task["overlap"],
                "is_labeled": len(task["annotations"]) >= task["overlap"],
                "inner_id": task["id"],
                "total_annotations": sum(
                    1 for a in task["annotations"] if not a.get("was_cancelled")
                ),
                "cancelled_annotations": sum(
                    1 for a in task["annotations"] if a.get("was_cancelled")
                ),
                "annotators": sorted({a.get("completed_by") for a in task["annotations"]}),
                "created_at": task["created_at"],
                "project": project_id,
            }
            if all_fields:
                item["annotations"] = list(task["annotations"])
                item["predictions"] = []
                item["drafts"] = []
            rendered.append(item)
        return self._answer(
            200,
            {
                "total_annotations": sum(len(t["annotations"]) for t in tasks),
                "total_predictions": 0,
                "total": len(tasks),
                "tasks": rendered,
            },
        )


CHOICES = ("left", "right", "tie")


class LabelStudioHarness(Harness):
    name = "labelstudio"
    routes: ClassVar[Mapping[Op, Route]] = {
        Op.CREATE_BATCH: Route("POST", r"^/api/projects/$"),
        Op.ADD_ITEMS: Route("POST", r"^/api/projects/\d+/import$"),
        Op.LIST_SUBMISSIONS: Route("GET", r"^/api/tasks/$"),
    }

    def __init__(self) -> None:
        super().__init__()
        self.secret = PERSONAL_TOKEN
        self.fake = FakeLabelStudio()

    def connector(self, wrap: Wrap | None = None) -> Connector:
        credentials = LabelStudioCredentials(base_url=BASE, api_key=SecretStr(self.secret))
        transport: httpx.BaseTransport = self.fake.transport
        client = credentials.get_client(
            timeout_s=5.0,
            retry=RetryPolicy(attempts=4),
            transport=wrap(transport) if wrap else transport,
            sleep=self.sleeps.append,
        )
        # Small pages: 6 items x overlap 2 span several task pages and submission pages.
        return LabelStudioConnector(client, page_size=5, task_page_size=4)

    def answer(self, connector: Connector, batch: BatchRef, items: list[TaskItem]) -> int:
        """Annotators 101, 102, ... answer each task up to the project's overlap."""
        project = self.fake.projects[int(batch.external_id)]
        made = 0
        for task in sorted(self.fake.project_tasks(project["id"]), key=lambda t: t["id"]):
            for n in range(project["maximum_annotations"]):
                choice = CHOICES[(task["id"] + n) % 3]
                result: dict[str, Any] = {
                    "id": f"r{task['id']}-{n}",
                    "from_name": "preference",
                    "to_name": "prompt",
                    "type": "choices",
                    "origin": "manual",
                    "value": {"choices": [choice]},
                }
                if task["data"].get("crowdloop_kind") == "rank":
                    # A Ranker result: the List's item ids in the annotator's order.
                    ids = [item["id"] for item in task["data"]["items"]]
                    shift = (task["id"] + n) % len(ids)
                    result = {
                        **result,
                        "from_name": "ranking",
                        "to_name": "answers",
                        "type": "ranker",
                        "value": {"ranker": {"ranking": ids[shift:] + ids[:shift]}},
                    }
                self.fake.annotate(task["id"], 101 + n, [result])
                made += 1
        return made

    def created(self) -> tuple[int, int]:
        return len(self.fake.projects), len(self.fake.tasks)


def make_harness() -> Harness:
    return LabelStudioHarness()
