"""A stateful fake of the parts of Prolific's API v1 the connector uses, under the contract.

Nothing here is a real Prolific server, and it was written beside the connector, so every
payload it returns and every rule it enforces names its vendor source (facts only):

[batches]   docs.prolific.com/api-reference/ai-task-builder/batches and
            documentation/core-concepts/running-ai-task-builder-batches-via-prolifics-api:
            dataset -> upload -> batch -> setup -> READY -> study -> publish -> responses.
[datasets]  .../ai-task-builder/datasets (V4 = created with a `schema`), uploading-data
            (GET upload-url/{filename} -> {upload_url, http_method: PUT, import_id}; the
            PUT goes to S3 without auth headers; import jobs uninitialised -> processing ->
            complete | partial | failed | pending_schema), get-task-builder-dataset (V4
            datasets list their `imports`).
[append]    .../append-dataset-datapoints: JSONL, <= 1000 records, identical record not
            written twice, accepted/rejected counts, 409 while an import runs, V4 only.
[setup]     .../setup-task-builder-batch: a V4 dataset needs an import job with status
            complete; PROCESSING until READY.
[sync]      CLI cmd/aitaskbuilder/batch_sync.go and client: POST .../sync answers
            {sync_id, status queued|processing|complete|failed}; GET .../syncs/{id}.
[cli-batch] CLI model/ai_task_builder.go: batch JSON (datasets[] with name, task_details,
            total_task_count, status), response records (id, batch_id, participant_id,
            task_id, correlation_id, submission_id, metadata, response{instruction_id,
            type, text | answer[{value}]}, created_at, schema_version); the batch list at
            /data-collection/batches/?workspace_id= (client/client.go, trailing slash).
[cli-resp]  CLI cmd/aitaskbuilder/get_task_responses_test.go: a free_text response carries
            `text` (the fixture this fake's default answer follows).
[studies]   api-reference/studies; CLI model/study.go (transitions PUBLISH, START, PAUSE,
            STOP); cookbooks/collecting-original-data-with-ai-task-builder-collections
            ("a study created without a project field will default to your personal
            account balance").
[subs]      .../submissions/submission-object, transition-submission (a repeat is
            ignored; REJECT needs a 100+ character message and a category), llms.txt
            (bulk-approve).
[groups]    .../participant-groups (members already in a group are ignored).
[account]   CLI client.go GetMe (/api/v1/users/me), GetProject (/api/v1/projects/{id}/);
            api-reference/workspaces/get-workspace, get-workspace-balance ({currency_code,
            total_balance, available_balance} in minor units).

Where the docs are silent the fake is stricter than the docs, and says so: a study is
refused for a batch that is not READY (the guide's order), and the bare batch-list path
answers a redirect (which httpx does not follow).
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlencode

import httpx
import respx
from pydantic import SecretStr

from crowdloop.connectors._http import RetryPolicy
from crowdloop.connectors.base import Connector
from crowdloop.connectors.prolific.connector import ProlificConnector
from crowdloop.connectors.prolific.credentials import ProlificCredentials
from crowdloop.connectors.testing import Harness, Op, Route, Wrap
from crowdloop.models.domain import BatchRef, TaskItem

BASE = "https://api.prolific.test"
S3 = "https://uploads.prolific-s3.test"  # the presigned-URL host [datasets]
TOKEN = "prolific-test-token-9f8e7d"
WORKSPACE = "60a1b2c3d4e5f60718293a4b"
PROJECT = "60a1b2c3d4e5f60718293a4c"
EPOCH = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)

Json = dict[str, Any]
Answerer = Callable[[Json], Json]


def _hex24(n: int) -> str:
    return f"{n:024x}"


def _ts(seconds: int) -> str:
    return (EPOCH + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def _error(status: int, detail: str) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"status": status, "title": "Error", "detail": detail}}
    )


def default_answer(record: Json) -> Json:
    """What a diligent participant answers for one datapoint (a response body): multiple
    choice as `answer: [{value}]`, free text as `text` [cli-batch, cli-resp]."""
    kind = record.get("crowdloop_kind")
    replica = int(record.get("crowdloop_replica", "0"))
    if kind == "compare":
        return {"type": "multiple_choice", "answer": [{"value": ("left", "right")[replica % 2]}]}
    if kind == "verify":
        return {"type": "multiple_choice", "answer": [{"value": "accept"}]}
    return {"type": "free_text", "text": f"A careful answer for {record.get('crowdloop_key')}"}


def answer_value_shape(record: Json) -> Json:
    """Free text as `answer[0].value`: the shape issue 13 reports Prolific's CLI reading
    (and the `value` field of collection exports, prolific-oss/skills collect-free-text)."""
    body = default_answer(record)
    if body["type"] == "free_text":
        return {"type": "free_text", "answer": [{"value": body["text"]}]}
    return body


class FakeProlific:
    def __init__(self, *, list_page_size: int = 2, balance: int = 50_000) -> None:
        self.list_page_size = list_page_size
        self.balance = balance  # available, minor units [account]
        self.projects: dict[str, Json] = {
            PROJECT: {"id": PROJECT, "title": "crowdloop", "workspace": WORKSPACE}
        }
        self.uploads: dict[str, Json] = {}  # presigned path -> import job
        self.s3_puts: list[httpx.Request] = []  # presigned uploads received
        self.sync_done_at_once = False
        self.datasets: dict[str, Json] = {}
        self.batches: dict[str, Json] = {}
        self.syncs: dict[str, Json] = {}
        self.studies: dict[str, Json] = {}
        self.submissions: dict[str, Json] = {}
        self.responses: list[Json] = []
        self.groups: dict[str, Json] = {}
        self._ids = itertools.count(1)
        self._clock = itertools.count(1)
        self.router = respx.Router(base_url=BASE, assert_all_called=False)
        self._routes()

    # --- plumbing --------------------------------------------------------------------------

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            if request.url.host == httpx.URL(S3).host:
                return self._s3_put(request)
            response: httpx.Response = self.router.handler(request)
            return response

        return httpx.MockTransport(handle)

    def _id(self) -> str:
        return _hex24(0xABC000 + next(self._ids))

    def _uuid(self) -> str:
        return str(uuid.UUID(int=0x5EED0000 + next(self._ids)))

    def _route(self, method: str, pattern: str, handler: Callable[..., httpx.Response]) -> None:
        def guarded(request: httpx.Request, **kwargs: str) -> httpx.Response:
            if request.headers.get("authorization") != f"Token {TOKEN}":
                return _error(401, "Invalid token.")
            return handler(request, **kwargs)

        self.router.route(method=method, path__regex=pattern).mock(side_effect=guarded)

    def _routes(self) -> None:
        dc = r"^/api/v1/data-collection"
        self._route("POST", dc + r"/datasets$", self._create_dataset)
        self._route("GET", dc + r"/datasets/(?P<ds>[^/]+)$", self._get_dataset)
        self._route(
            "GET", dc + r"/datasets/(?P<ds>[^/]+)/upload-url/(?P<fn>[^/]+)$", self._upload_url
        )
        self._route("GET", dc + r"/datasets/(?P<ds>[^/]+)/imports/(?P<im>[^/]+)$", self._import)
        self._route("GET", r"^/api/v1/users/me/?$", self._me)
        self._route("GET", r"^/api/v1/workspaces/(?P<ws>[^/]+)/$", self._workspace)
        self._route("GET", r"^/api/v1/workspaces/(?P<ws>[^/]+)/balance/$", self._balance)
        self._route("GET", r"^/api/v1/projects/(?P<p>[^/]+)/$", self._project)
        self._route("POST", dc + r"/datasets/(?P<ds>[^/]+)/datapoints$", self._append)
        self._route("POST", dc + r"/batches$", self._create_batch)
        self._route("GET", dc + r"/batches/$", self._list_batches)
        self._route("GET", dc + r"/batches$", self._redirect_to_slash)
        self._route("GET", dc + r"/batches/(?P<b>[^/]+)$", self._get_batch)
        self._route("GET", dc + r"/batches/(?P<b>[^/]+)/status$", self._batch_status)
        self._route("POST", dc + r"/batches/(?P<b>[^/]+)/setup$", self._setup)
        self._route("POST", dc + r"/batches/(?P<b>[^/]+)/sync$", self._sync)
        self._route("GET", dc + r"/batches/(?P<b>[^/]+)/syncs/(?P<s>[^/]+)$", self._sync_status)
        self._route("GET", dc + r"/batches/(?P<b>[^/]+)/responses$", self._responses)
        self._route("POST", r"^/api/v1/studies/$", self._create_study)
        self._route("GET", r"^/api/v1/studies/$", self._list_studies)
        self._route("GET", r"^/api/v1/projects/(?P<p>[^/]+)/studies/$", self._list_studies)
        self._route("GET", r"^/api/v1/studies/(?P<st>[^/]+)/$", self._get_study)
        self._route("PATCH", r"^/api/v1/studies/(?P<st>[^/]+)/$", self._patch_study)
        self._route("POST", r"^/api/v1/studies/(?P<st>[^/]+)/transition/$", self._transition)
        self._route("GET", r"^/api/v1/studies/(?P<st>[^/]+)/submissions/$", self._submissions)
        self._route("POST", r"^/api/v1/submissions/bulk-approve/$", self._bulk_approve)
        self._route("POST", r"^/api/v1/submissions/(?P<sub>[^/]+)/transition/$", self._review_one)
        self._route("GET", r"^/api/v1/participant-groups/$", self._list_groups)
        self._route("POST", r"^/api/v1/participant-groups/$", self._create_group)
        self._route(
            "POST", r"^/api/v1/participant-groups/(?P<g>[^/]+)/participants/$", self._add_members
        )

    def _paged(self, request: httpx.Request, items: list[Json]) -> httpx.Response:
        params = dict(request.url.params)
        offset = int(params.get("offset", 0))
        limit = int(params.get("limit", self.list_page_size))
        page = items[offset : offset + limit]
        nxt = None
        if offset + limit < len(items):
            query = {**params, "offset": offset + limit, "limit": limit}
            nxt = f"{BASE}{request.url.path}?{urlencode(query)}"
        return httpx.Response(
            200,
            json={
                "results": page,
                "_links": {"self": {"href": str(request.url)}, "next": {"href": nxt}},
                "meta": {"count": len(items)},
            },
        )

    # --- datasets ----------------------------------------------------------------------------

    def _create_dataset(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if not body.get("name") or body.get("workspace_id") != WORKSPACE:
            return _error(400, "name and a known workspace_id are required")
        schema = body.get("schema")
        if not isinstance(schema, dict) or not isinstance(schema.get("fields"), dict):
            return _error(400, "this fake only serves V4 datasets (with a schema)")
        ds = {
            "id": self._uuid(),
            "name": body["name"],
            "workspace_id": WORKSPACE,
            "schema": schema,
            "records": [],
            "imports": [],
            "created_at": _ts(next(self._clock)),
        }
        self.datasets[ds["id"]] = ds
        return httpx.Response(201, json=self._dataset_json(ds))

    def _dataset_json(self, ds: Json) -> Json:
        return {k: v for k, v in ds.items() if k != "records"}

    def _get_dataset(self, request: httpx.Request, ds: str) -> httpx.Response:
        dataset = self.datasets.get(ds)
        if dataset is None:
            return _error(404, "dataset not found")
        return httpx.Response(200, json=self._dataset_json(dataset))

    def _upload_url(self, request: httpx.Request, ds: str, fn: str) -> httpx.Response:
        dataset = self.datasets.get(ds)
        if dataset is None:
            return _error(404, "dataset not found")
        job = {"id": self._uuid(), "status": "uninitialised", "filename": fn}
        dataset["imports"].append(job)
        path = f"/raw-datasets/{ds}/{job['id']}/{fn}"
        self.uploads[path] = {"dataset": ds, "job": job}
        return httpx.Response(
            200,
            json={
                "upload_url": f"{S3}{path}?X-Amz-Signature=fake",
                "http_method": "PUT",
                "import_id": job["id"],
            },
        )

    def _s3_put(self, request: httpx.Request) -> httpx.Response:
        """The presigned PUT: no Prolific auth [datasets]; the import then runs."""
        self.s3_puts.append(request)
        if "authorization" in request.headers:
            return httpx.Response(400, text="presigned upload must not carry Authorization")
        upload = self.uploads.get(request.url.path)
        if request.method != "PUT" or upload is None:
            return httpx.Response(403, text="SignatureDoesNotMatch")
        job, dataset = upload["job"], self.datasets[upload["dataset"]]
        accepted, errors = self._ingest(dataset, request.content.decode())
        job.update(
            status="processing",
            _result="complete" if not errors else ("partial" if accepted else "failed"),
            accepted_count=accepted,
            rejected_count=len(errors),
            errors=errors,
        )
        return httpx.Response(200)

    def _import(self, request: httpx.Request, ds: str, im: str) -> httpx.Response:
        dataset = self.datasets.get(ds)
        job = next((j for j in (dataset or {}).get("imports", []) if j["id"] == im), None)
        if job is None:
            return _error(404, "import not found")
        if job["status"] == "processing":  # the import finishes between two reads
            job["status"] = job.pop("_result")
        return httpx.Response(200, json={k: v for k, v in job.items() if not k.startswith("_")})

    def _ingest(self, dataset: Json, text: str) -> tuple[int, list[Json]]:
        lines = [line for line in text.splitlines() if line.strip()]
        fields = set(dataset["schema"]["fields"])
        accepted, errors = 0, []
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                errors.append({"line": number, "error": "not JSON"})
                continue
            unknown = set(record) - fields if isinstance(record, dict) else {"<not an object>"}
            if unknown:
                errors.append({"line": number, "error": f"unknown fields {sorted(unknown)}"})
                continue
            accepted += 1
            if record not in dataset["records"]:  # an identical record is not written twice
                dataset["records"].append(record)
        return accepted, errors

    # --- account -----------------------------------------------------------------------------

    def _me(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"id": "5f0e0e0e0e0e0e0e0e0e0e0e", "email": "r@x.test"})

    def _workspace(self, request: httpx.Request, ws: str) -> httpx.Response:
        if ws != WORKSPACE:
            return _error(404, "workspace not found")
        return httpx.Response(200, json={"id": WORKSPACE, "title": "crowdloop", "projects": []})

    def _balance(self, request: httpx.Request, ws: str) -> httpx.Response:
        if ws != WORKSPACE:
            return _error(404, "workspace not found")
        return httpx.Response(
            200,
            json={
                "currency_code": "USD",
                "total_balance": self.balance,
                "available_balance": self.balance,
            },
        )

    def _project(self, request: httpx.Request, p: str) -> httpx.Response:
        project = self.projects.get(p)
        if project is None:
            return _error(404, "project not found")
        return httpx.Response(200, json=project)

    def _append(self, request: httpx.Request, ds: str) -> httpx.Response:
        dataset = self.datasets.get(ds)
        if dataset is None:
            return _error(404, "dataset not found")
        if not request.headers.get("content-type", "").startswith("application/x-ndjson"):
            return _error(415, "send JSONL (application/x-ndjson)")
        lines = [line for line in request.content.decode().splitlines() if line.strip()]
        if len(lines) > 1000:
            return _error(400, "at most 1000 records per request")
        if any(j["status"] in ("queued", "processing") for j in dataset["imports"]):
            return _error(409, "an import is in progress")
        accepted, errors = self._ingest(dataset, request.content.decode())
        return httpx.Response(
            200,
            json={"accepted_count": accepted, "rejected_count": len(errors), "errors": errors},
        )

    # --- AI Task Builder batches ---------------------------------------------------------------

    def _batch_json(self, batch: Json) -> Json:
        dataset = self.datasets[batch["dataset_id"]]
        return {
            "id": batch["id"],
            "name": batch["name"],
            "status": batch["status"],
            "workspace_id": batch["workspace_id"],
            "created_at": batch["created_at"],
            "tasks_per_group": batch["tasks_per_group"],
            "total_task_count": len(batch["tasks"]),
            "total_instruction_count": 1,
            "datasets": [
                {
                    "id": dataset["id"],
                    "name": dataset["name"],
                    "total_datapoint_count": len(dataset["records"]),
                }
            ],
            "task_details": batch["task_details"],
        }

    def _create_batch(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        dataset = self.datasets.get(body.get("dataset_id", ""))
        if not body.get("name") or body.get("workspace_id") != WORKSPACE or dataset is None:
            return _error(400, "name, workspace_id and an existing dataset_id are required")
        details = body.get("task_details") or {}
        if not all(details.get(k) for k in ("task_name", "task_introduction", "task_steps")):
            return _error(400, "task_details needs task_name, task_introduction, task_steps")
        problem = _check_layout(body.get("batch_items"), set(dataset["schema"]["fields"]))
        if problem:
            return _error(400, f"INVALID_BATCH_ITEMS: {problem}")
        batch = {
            "id": self._uuid(),
            "name": body["name"],
            "workspace_id": WORKSPACE,
            "dataset_id": dataset["id"],
            "task_details": details,
            "batch_items": body["batch_items"],
            "status": "UNINITIALISED",
            "tasks_per_group": 1,
            "tasks": [],
            "created_at": _ts(next(self._clock)),
        }
        self.batches[batch["id"]] = batch
        return httpx.Response(201, json=self._batch_json(batch))

    def _redirect_to_slash(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(301, headers={"Location": f"{request.url.path}/?{request.url.query}"})

    def _list_batches(self, request: httpx.Request) -> httpx.Response:
        ws = request.url.params.get("workspace_id")
        found = [self._batch_json(b) for b in self.batches.values() if b["workspace_id"] == ws]
        return httpx.Response(200, json={"results": found})

    def _get_batch(self, request: httpx.Request, b: str) -> httpx.Response:
        batch = self.batches.get(b)
        if batch is None:
            return _error(404, "batch not found")
        return httpx.Response(200, json=self._batch_json(batch))

    def _materialise(self, batch: Json) -> int:
        have = {json.dumps(t["record"], sort_keys=True) for t in batch["tasks"]}
        made = 0
        for record in self.datasets[batch["dataset_id"]]["records"]:
            if json.dumps(record, sort_keys=True) not in have:
                batch["tasks"].append({"id": self._uuid(), "record": record, "taken": False})
                made += 1
        return made

    def _batch_status(self, request: httpx.Request, b: str) -> httpx.Response:
        batch = self.batches.get(b)
        if batch is None:
            return _error(404, "batch not found")
        status = batch["status"]
        if status == "PROCESSING":  # setup finishes between two status reads
            self._materialise(batch)
            batch["status"] = "READY"
        return httpx.Response(200, json={"status": status})

    def _setup(self, request: httpx.Request, b: str) -> httpx.Response:
        batch = self.batches.get(b)
        if batch is None:
            return _error(404, "batch not found")
        body = json.loads(request.content or b"{}")
        if batch["status"] != "UNINITIALISED":
            return _error(400, f"batch is {batch['status']}")
        if body.get("dataset_id", batch["dataset_id"]) != batch["dataset_id"]:
            return _error(400, "unknown dataset")
        imports = self.datasets[batch["dataset_id"]]["imports"]
        if not any(j["status"] == "complete" for j in imports):  # [setup], V4 datasets
            return _error(400, "the dataset has no import job with status complete")
        batch["tasks_per_group"] = int(body.get("tasks_per_group", 1))
        batch["status"] = "PROCESSING"
        return httpx.Response(202)

    def _sync(self, request: httpx.Request, b: str) -> httpx.Response:
        batch = self.batches.get(b)
        if batch is None:
            return _error(404, "batch not found")
        if batch["status"] != "READY":
            return _error(400, "only a READY batch can be synced")
        if self.sync_done_at_once:  # terminal at once, no sync_id: the CLI handles it [sync]
            made = self._materialise(batch)
            return httpx.Response(200, json={"status": "complete", "tasks_created": made})
        job = {
            "sync_id": self._uuid(),
            "batch_id": b,
            "dataset_id": batch["dataset_id"],
            "status": "queued",
            "created_at": _ts(next(self._clock)),
        }
        self.syncs[job["sync_id"]] = job
        return httpx.Response(202, json=job)

    def _sync_status(self, request: httpx.Request, b: str, s: str) -> httpx.Response:
        job = self.syncs.get(s)
        if job is None or job["batch_id"] != b:
            return _error(404, "sync not found")
        if job["status"] == "queued":
            made = self._materialise(self.batches[b])
            job.update(status="complete", tasks_created=made, datapoints_processed=made)
        return httpx.Response(200, json=job)

    def _responses(self, request: httpx.Request, b: str) -> httpx.Response:
        if b not in self.batches:
            return _error(404, "batch not found")
        found = [r for r in self.responses if r["batch_id"] == b]
        return httpx.Response(200, json={"results": found, "meta": {"count": len(found)}})

    # --- studies -------------------------------------------------------------------------------

    def _study_json(self, study: Json) -> Json:
        return {k: v for k, v in study.items() if not k.startswith("_")}

    def _create_study(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        required = (
            "name",
            "internal_name",
            "description",
            "reward",
            "total_available_places",
            "estimated_completion_time",
            "completion_codes",
        )
        missing = [k for k in required if k not in body]
        if missing:
            return _error(400, f"missing {missing}")
        if body.get("data_collection_method") != "AI_TASK_BUILDER_BATCH":
            return _error(400, "this fake only serves AI Task Builder studies")
        aitb = self.batches.get(body.get("data_collection_id", ""))
        if aitb is None:
            return _error(400, "data_collection_id is not a batch")
        if aitb["status"] != "READY":  # stricter than the docs: the guide's order [batches]
            return _error(400, "the AI Task Builder batch is not READY")
        project = body.get("project")
        if project is not None and project not in self.projects:
            return _error(400, "unknown project")
        if not isinstance(body["reward"], int) or body["reward"] <= 0:
            return _error(400, "reward must be a positive integer (minor units)")
        for f in body.get("filters", []):
            if f.get("filter_id") == "participant_group_blocklist" and not all(
                g in self.groups for g in f.get("selected_values", [])
            ):
                return _error(400, "unknown participant group in filters")
        study = {
            **body,
            "id": self._id(),
            "status": "UNPUBLISHED",
            "date_created": _ts(next(self._clock)),
            "total_cost": body["reward"] * body["total_available_places"],
            # [studies]: no project -> the personal balance pays
            "_billed_to": f"project {project}" if project else "personal balance",
        }
        self.studies[study["id"]] = study
        return httpx.Response(201, json=self._study_json(study))

    def _list_studies(self, request: httpx.Request, p: str | None = None) -> httpx.Response:
        found = [
            self._study_json(s) for s in self.studies.values() if p is None or s.get("project") == p
        ]
        return self._paged(request, found)

    def _get_study(self, request: httpx.Request, st: str) -> httpx.Response:
        study = self.studies.get(st)
        if study is None:
            return _error(404, "study not found")
        return httpx.Response(200, json=self._study_json(study))

    def _patch_study(self, request: httpx.Request, st: str) -> httpx.Response:
        study = self.studies.get(st)
        if study is None:
            return _error(404, "study not found")
        body = json.loads(request.content)
        if body.get("total_available_places", 1) < 1:
            return _error(400, "total_available_places must be positive")
        study.update(body)
        return httpx.Response(200, json=self._study_json(study))

    def _transition(self, request: httpx.Request, st: str) -> httpx.Response:
        study = self.studies.get(st)
        if study is None:
            return _error(404, "study not found")
        action = json.loads(request.content).get("action")
        allowed = {
            "PUBLISH": ({"UNPUBLISHED"}, "ACTIVE"),
            "START": ({"PAUSED"}, "ACTIVE"),
            "PAUSE": ({"ACTIVE"}, "PAUSED"),
            "STOP": ({"ACTIVE", "PAUSED"}, "COMPLETED"),
        }
        if action not in allowed or study["status"] not in allowed[action][0]:
            return _error(400, f"cannot {action} a study that is {study['status']}")
        if action == "PUBLISH" and self.batches[study["data_collection_id"]]["status"] != "READY":
            return _error(400, "the AI Task Builder batch is not READY")
        study["status"] = allowed[action][1]
        return httpx.Response(200, json=self._study_json(study))

    # --- submissions ---------------------------------------------------------------------------

    def _submissions(self, request: httpx.Request, st: str) -> httpx.Response:
        if st not in self.studies:
            return _error(404, "study not found")
        ordering = request.url.params.get("ordering", "started_at")
        rows = [s for s in self.submissions.values() if s["study_id"] == st]
        rows.sort(key=lambda s: (s.get(ordering.lstrip("-")) or "", s["id"]))
        return self._paged(request, rows)

    def _review_one(self, request: httpx.Request, sub: str) -> httpx.Response:
        submission = self.submissions.get(sub)
        if submission is None:
            return _error(404, "submission not found")
        body = json.loads(request.content)
        action = body.get("action")
        target = {"APPROVE": "APPROVED", "REJECT": "REJECTED"}.get(action)
        if target is None:
            return _error(400, f"unknown action {action!r}")
        if submission["status"] == target:
            return httpx.Response(200, json=submission)  # documented: a repeat is ignored
        if submission["status"] != "AWAITING REVIEW":
            return _error(400, f"submission is {submission['status']}")
        if action == "REJECT" and (
            len(body.get("message") or "") < 100 or not body.get("rejection_category")
        ):
            return _error(400, "REJECT needs a message of 100+ characters and a category")
        submission["status"] = target
        return httpx.Response(200, json=submission)

    def _bulk_approve(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        ids = body.get("submission_ids") or []
        rows = [self.submissions.get(i) for i in ids]
        if any(r is None or r["study_id"] != body.get("study_id") for r in rows):
            return _error(400, "unknown submission for this study")
        if any(r["status"] != "AWAITING REVIEW" for r in rows if r):
            return _error(400, "only submissions awaiting review can be approved")
        for r in rows:
            if r:
                r["status"] = "APPROVED"
        return httpx.Response(200, json={})

    # --- participant groups ----------------------------------------------------------------------

    def _group_json(self, group: Json) -> Json:
        return {
            "id": group["id"],
            "name": group["name"],
            "workspace_id": group["workspace_id"],
            "description": group["description"],
            "participant_count": len(group["participants"]),
            "is_deleted": False,
        }

    def _list_groups(self, request: httpx.Request) -> httpx.Response:
        ws = request.url.params.get("workspace_id")
        found = [self._group_json(g) for g in self.groups.values() if g["workspace_id"] == ws]
        return self._paged(request, found)

    def _create_group(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if not body.get("name") or body.get("workspace_id") != WORKSPACE:
            return _error(400, "name and workspace_id are required")
        group = {
            "id": self._id(),
            "name": body["name"],
            "workspace_id": WORKSPACE,
            "description": body.get("description", ""),
            "participants": list(body.get("participant_ids", [])),
        }
        self.groups[group["id"]] = group
        return httpx.Response(201, json=self._group_json(group))

    def _add_members(self, request: httpx.Request, g: str) -> httpx.Response:
        group = self.groups.get(g)
        if group is None:
            return _error(404, "participant group not found")
        for pid in json.loads(request.content).get("participant_ids", []):
            if pid not in group["participants"]:  # members already in the group are ignored
                group["participants"].append(pid)
        members = [{"participant_id": p} for p in group["participants"]]
        return httpx.Response(200, json={"results": members})

    # --- the crowd -----------------------------------------------------------------------------

    def blocked(self, study: Json) -> set[str]:
        out: set[str] = set()
        for f in study.get("filters", []):
            if f.get("filter_id") == "participant_group_blocklist":
                for g in f.get("selected_values", []):
                    out.update(self.groups[g]["participants"])
        return out

    def study_of(self, batch_id: str) -> Json | None:
        """The study attached to an AI Task Builder batch (None before it is created)."""
        return next((s for s in self.studies.values() if s["data_collection_id"] == batch_id), None)

    def work(
        self,
        batch_id: str,
        *,
        answer: Answerer = default_answer,
        participants: list[str] | None = None,
        status: str = "AWAITING REVIEW",
    ) -> int:
        """Participants take every open task of a batch's published study, one submission
        each; a study that is not ACTIVE (draft, paused, stopped) hands out nothing."""
        study = self.study_of(batch_id)
        if study is None or study["status"] != "ACTIVE":
            return 0
        study_id = study["id"]
        batch = self.batches[study["data_collection_id"]]
        blocked = self.blocked(study)
        pool = participants or [_hex24(0x5A0000 + n) for n in range(1, 200)]
        crowd = itertools.cycle([p for p in pool if p not in blocked])
        made = 0
        for task in batch["tasks"]:
            if task["taken"]:
                continue
            task["taken"] = True
            who = next(crowd)
            at = next(self._clock)
            sub = {
                "id": self._id(),
                "study_id": study_id,
                "participant_id": who,
                "status": status,
                "started_at": _ts(at),
                "completed_at": None if status in ("ACTIVE", "RESERVED") else _ts(at + 60),
                "is_complete": status not in ("ACTIVE", "RESERVED"),
                "reward": study["reward"],
                "study_code": "CODE",
            }
            self.submissions[sub["id"]] = sub
            record = task["record"]
            fields = self.datasets[batch["dataset_id"]]["schema"]["fields"]
            self.responses.append(
                {
                    "id": self._uuid(),
                    "batch_id": batch["id"],
                    "participant_id": who,
                    "task_id": task["id"],
                    "correlation_id": self._uuid(),
                    "submission_id": sub["id"],
                    "metadata": {
                        k: v for k, v in record.items() if fields[k]["type"] == "metadata"
                    },
                    "response": {"instruction_id": self._uuid(), **answer(record)},
                    "created_at": _ts(at + 59),
                    "schema_version": 1,
                }
            )
            made += 1
        return made

    def task_keys(self) -> set[tuple[str, str]]:
        return {
            (ds_id, r["crowdloop_key"])
            for ds_id, ds in self.datasets.items()
            for r in ds["records"]
        }


def _check_layout(pages: Any, fields: set[str]) -> str | None:
    if not isinstance(pages, list) or not pages:
        return "batch_items must be a non-empty list of pages"
    for p, page in enumerate(pages):
        for r, row in enumerate(page.get("rows", [])):
            columns = row.get("columns", [])
            if not 1 <= len(columns) <= 2:
                return f"page {p} row {r}: 1 or 2 columns"
            for column in columns:
                for item in column.get("items", []):
                    if item.get("type") == "dataset_field" and item.get("field") not in fields:
                        return f"page {p} row {r}: unknown dataset field {item.get('field')!r}"
                    if item.get("type") == "multiple_choice" and item.get("answer_limit", 1) > len(
                        item.get("options", [])
                    ):
                        return f"page {p} row {r}: answer_limit exceeds the options"
    return None


def make_connector(
    fake: FakeProlific,
    *,
    wrap: Wrap | None = None,
    sleeps: list[float] | None = None,
    page_limit: int = 5,
    token: str = TOKEN,
    **options: Any,
) -> ProlificConnector:
    credentials = ProlificCredentials(api_token=SecretStr(token), base_url=BASE)
    transport: httpx.BaseTransport = fake.transport()
    client = credentials.get_client(
        timeout_s=5.0,
        retry=RetryPolicy(attempts=4),
        transport=wrap(transport) if wrap else transport,
        sleep=sleeps.append if sleeps is not None else (lambda _s: None),
    )
    return ProlificConnector(
        client,
        workspace_id=WORKSPACE,
        project_id=options.pop("project_id", PROJECT),
        page_limit=page_limit,
        poll_interval_s=0.25,
        poll_timeout_s=5.0,
        **options,
    )


class ProlificHarness(Harness):
    name = "prolific"
    routes: ClassVar[Mapping[Op, Route]] = {
        Op.CREATE_BATCH: Route("POST", r"^/api/v1/data-collection/batches$"),
        # The first load of a batch is the presigned upload (the import job setup needs).
        Op.ADD_ITEMS: Route("PUT", r"^/raw-datasets/"),
        Op.LIST_SUBMISSIONS: Route("GET", r"^/api/v1/studies/[^/]+/submissions/$"),
    }

    # Prolific cannot list datapoints, so `find_tasks` confirms answered keys only; replaying
    # `add_items` is what keeps a reconcile from duplicating (see the lead's contract note).
    lists_tasks = False

    def __init__(self) -> None:
        super().__init__()
        self.fake = FakeProlific()
        self.secret = TOKEN

    def connector(self, wrap: Wrap | None = None) -> Connector:
        return make_connector(self.fake, wrap=wrap, sleeps=self.sleeps, token=self.secret)

    def answer(self, connector: Connector, batch: BatchRef, items: list[TaskItem]) -> int:
        return self.fake.work(batch.external_id)

    def created(self) -> tuple[int, int]:
        return len(self.fake.batches), len(self.fake.task_keys())


def make_harness() -> Harness:
    return ProlificHarness()
