"""TolokaConnector against respx routers holding Toloka API v1 payloads (shaped from the
Toloka API reference and toloka-kit), asserting on what is sent; and against the stateful
fake of the contract harness for the multi-call flows (paging, resume, review)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx
from pydantic import SecretStr, ValidationError

from crowdloop.connectors._http import RetryPolicy
from crowdloop.connectors.errors import (
    AuthError,
    InvalidRequest,
    NotSupported,
    RateLimited,
    TransientError,
)
from crowdloop.connectors.toloka.connector import (
    OPERATION_NAMESPACE,
    TolokaConnector,
    TolokaOptions,
)
from crowdloop.connectors.toloka.credentials import (
    ENV_KEY,
    ENV_SCHEME,
    PRODUCTION_URL,
    SANDBOX_URL,
    TolokaCredentials,
)
from crowdloop.models.domain import (
    BatchRef,
    BatchSpec,
    BatchState,
    BlockScope,
    Capability,
    CompareTask,
    Money,
    PreferenceAnswer,
    ReviewDecision,
    Stage,
    Submission,
    TaskItem,
    TextAnswer,
    VerifyTask,
    WriteResponseTask,
)
from tests.contract.harness_toloka import (
    API_KEY,
    BASE,
    NOW,
    FakeToloka,
    project_json,
    toloka_options,
)

POOL_ID = "1000001"
BATCH = BatchRef(connector="toloka", external_id=POOL_ID)
SPEC = BatchSpec(
    name="camp-1 / compare",
    stage=Stage.COMPARE,
    instruction="Which answer is better?",
    reward=Money(amount=Decimal("0.05")),
    campaign_id="camp-1",
)
KEY = "crowdloop:camp-1:compare:batch"


def pool_json(pool_id: str = POOL_ID, key: str = KEY, **extra: Any) -> dict[str, Any]:
    """A pool as GET /v1/pools/{id} returns it (get-pool.md)."""
    return {
        "id": pool_id,
        "project_id": "101",
        "private_name": "camp-1 / compare",
        "private_comment": f"crowdloop batch {key}",
        "may_contain_adult_content": False,
        "reward_per_assignment": 0.1,
        "assignment_max_duration_seconds": 600,
        "auto_accept_solutions": False,
        "defaults": {"default_overlap_for_new_task_suites": 1, "default_overlap_for_new_tasks": 1},
        "mixer_config": {"real_tasks_count": 2, "golden_tasks_count": 0, "training_tasks_count": 0},
        "metadata": {"crowdloop_key": [key], "crowdloop_stage": ["compare"]},
        "status": "CLOSED",
        "created": "2024-05-01T12:00:00.000",
        "type": "REGULAR",
        **extra,
    }


def items(n: int, *, exclude: tuple[str, ...] = ()) -> list[TaskItem]:
    return [
        TaskItem(
            key=f"camp-1:item-{i}.0",
            group=f"item-{i}",
            payload=CompareTask(
                instruction="Which answer is better?",
                prompt=f"Top 5 rivers, take {i}",
                left="1. Nile 2. Amazon",
                right="1. Danube 2. Rhine",
            ),
            overlap=3,
            exclude_workers=exclude,
        )
        for i in range(n)
    ]


def connector_on(
    router: respx.Router,
    *,
    sleeps: list[float] | None = None,
    attempts: int = 3,
    **options: Any,
) -> TolokaConnector:
    credentials = TolokaCredentials(api_key=SecretStr(API_KEY), base_url=BASE)
    client = credentials.get_client(
        transport=httpx.MockTransport(router.handler),
        retry=RetryPolicy(attempts=attempts),
        sleep=sleeps.append if sleeps is not None else (lambda _: None),
    )
    opts = TolokaOptions.model_validate(
        {"project_id": "101", "check_project": False, "tasks_per_suite": 2, **options}
    )
    return TolokaConnector(client, opts, now=lambda: NOW)


def router() -> respx.Router:
    return respx.Router(base_url=BASE, assert_all_called=False)


def body_of(call: Any) -> Any:
    return json.loads(call.request.content)


def params_of(call: Any) -> dict[str, str]:
    return dict(call.request.url.params)


def toloka_error(status: int, code: str, message: str = "error") -> httpx.Response:
    return httpx.Response(status, json={"request_id": "r-1", "code": code, "message": message})


# --- configuration -----------------------------------------------------------------------------


def test_from_config_uses_the_environment_and_picks_the_api_root(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_KEY, "key-from-env")
    monkeypatch.delenv(ENV_SCHEME, raising=False)
    prod = TolokaConnector.from_config({"project_id": "101"}, None)
    sandbox = TolokaConnector.from_config({"project_id": "101", "sandbox": True}, None)
    assert prod.client.seam.base_url == PRODUCTION_URL == "https://toloka.dev/api"
    assert sandbox.client.seam.base_url == SANDBOX_URL == "https://sandbox.toloka.dev/api"
    assert prod.client.seam.auth_headers == {"Authorization": "ApiKey key-from-env"}
    monkeypatch.setenv(ENV_SCHEME, "OAuth")
    legacy = TolokaConnector.from_config({"project_id": "101"}, None)
    assert legacy.client.seam.auth_headers == {"Authorization": "OAuth key-from-env"}
    for made in (prod, sandbox, legacy):
        made.close()


def test_from_config_refuses_a_missing_project_or_an_unknown_option(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV_KEY, "key")
    with pytest.raises(ValidationError, match="project_id"):
        TolokaConnector.from_config({}, None)
    with pytest.raises(ValidationError, match="projct_id"):
        TolokaConnector.from_config({"projct_id": "101"}, None)
    monkeypatch.delenv(ENV_KEY)
    with pytest.raises(RuntimeError, match=ENV_KEY):
        TolokaConnector.from_config({"project_id": "101"}, None)


def test_capabilities_are_what_toloka_can_do() -> None:
    caps = TolokaConnector.capabilities
    assert {
        Capability.PAIRWISE,
        Capability.FREE_TEXT,
        Capability.BLOCK_WORKER,
        Capability.REVIEW,
        Capability.EXCLUDE_WORKERS,
        Capability.SANDBOX,
        Capability.QUALIFY_WORKERS,
    } <= caps
    # Pools are reconciled by lookup, not deduped by Toloka; no per-pool spend report.
    assert Capability.IDEMPOTENT_CREATE not in caps
    assert Capability.SPEND_REPORT not in caps
    with connector_on(router()) as connector:
        assert connector.spend(BATCH) is None


# --- pools ---------------------------------------------------------------------------------------


def test_create_batch_sends_the_pool_with_our_key_and_auth() -> None:
    r = router()
    listed = r.get("/v1/pools").respond(200, json={"items": [], "has_more": False})
    created = r.post("/v1/pools").respond(201, json=pool_json())
    extra = {
        "filter": {
            "and": [{"category": "profile", "key": "languages", "operator": "IN", "value": "EN"}]
        },
        "metadata": {"crowdloop_key": ["not ours"]},  # cannot override what crowdloop sets
    }
    with connector_on(r, pool_extra=extra) as connector:
        assert connector.create_batch(SPEC, idempotency_key=KEY) == BATCH
    assert params_of(listed.calls[0]) == {"project_id": "101", "sort": "id", "limit": "300"}
    request = created.calls[0].request
    assert request.headers["authorization"] == f"ApiKey {API_KEY}"
    body = body_of(created.calls[0])
    assert body["project_id"] == "101"
    assert body["private_name"] == "camp-1 / compare"
    assert body["metadata"]["crowdloop_key"] == [KEY]
    assert KEY in body["private_comment"]
    assert body["reward_per_assignment"] == pytest.approx(0.10)  # 0.05 a task, 2 per suite
    assert body["mixer_config"] == {
        "real_tasks_count": 2,
        "golden_tasks_count": 0,
        "training_tasks_count": 0,
    }
    assert body["auto_accept_solutions"] is False
    assert body["will_expire"] == "2024-05-31T12:00:00"
    assert body["filter"] == extra["filter"]
    assert "known_solutions" not in json.dumps(body)


def test_create_batch_replayed_finds_the_pool_instead_of_creating() -> None:
    r = router()
    r.get("/v1/pools").respond(200, json={"items": [pool_json()], "has_more": False})
    created = r.post("/v1/pools").respond(201, json=pool_json())
    with connector_on(r) as connector:
        assert connector.create_batch(SPEC, idempotency_key=KEY) == BATCH
    assert not created.called


def test_find_batch_pages_through_the_projects_pools() -> None:
    r = router()
    first = [pool_json(str(1000 + i), key=f"other-{i}") for i in range(3)]
    listed = r.get("/v1/pools").mock(
        side_effect=[
            httpx.Response(200, json={"items": first, "has_more": True}),
            httpx.Response(200, json={"items": [pool_json("1007")], "has_more": False}),
            httpx.Response(200, json={"items": first, "has_more": False}),
        ]
    )
    with connector_on(r) as connector:
        assert connector.find_batch(KEY) == BatchRef(connector="toloka", external_id="1007")
        assert connector.find_batch("crowdloop:never-used") is None
    assert params_of(listed.calls[1])["id_gt"] == "1002"


def test_a_pool_created_behind_a_5xx_is_found_not_created_again() -> None:
    r = router()
    r.get("/v1/pools").mock(
        side_effect=[
            httpx.Response(200, json={"items": [], "has_more": False}),
            httpx.Response(200, json={"items": [pool_json()], "has_more": False}),
        ]
    )
    created = r.post("/v1/pools").respond(
        500, json={"code": "INTERNAL_ERROR", "message": "Internal Error"}
    )
    sleeps: list[float] = []
    with connector_on(r, sleeps=sleeps) as connector:
        assert connector.create_batch(SPEC, idempotency_key=KEY) == BATCH
    assert created.call_count == 1, "a pool create is sent once, then looked up"
    assert sleeps == []


def test_a_pool_create_that_fails_and_is_not_found_is_sent_again_then_gives_up() -> None:
    r = router()
    r.get("/v1/pools").respond(200, json={"items": [], "has_more": False})
    created = r.post("/v1/pools").respond(
        503, json={"code": "REMOTE_SERVICE_UNAVAILABLE", "message": "unavailable"}
    )
    sleeps: list[float] = []
    with connector_on(r, sleeps=sleeps, attempts=3) as connector, pytest.raises(TransientError):
        connector.create_batch(SPEC, idempotency_key=KEY)
    assert created.call_count == 3
    assert sleeps == [0.5, 1.0]


def test_pool_quota_429_is_waited_out_with_retry_after() -> None:
    r = router()
    r.get("/v1/pools").respond(200, json={"items": [], "has_more": False})
    created = r.post("/v1/pools").mock(
        side_effect=[
            httpx.Response(
                429,
                headers={"Retry-After": "7"},
                json={
                    "code": "TOO_MANY_REQUESTS",
                    "message": "Too many requests",
                    "payload": {"interval": "MIN"},
                },
            ),
            httpx.Response(201, json=pool_json()),
        ]
    )
    sleeps: list[float] = []
    with connector_on(r, sleeps=sleeps) as connector:
        assert connector.create_batch(SPEC, idempotency_key=KEY) == BATCH
    assert created.call_count == 2
    assert sleeps == [7.0]


# A per-minute quota refusal as Toloka documents it: the error body of the API reference
# ("HTTP status codes": request_id, code, message, payload; github.com/Toloka/docs
# en/api/reference/parts/api/info-description.md), the code toloka-kit maps to
# TooManyRequestsApiError (src/client/exceptions.py, CommonErrorCodes.TOO_MANY_REQUESTS)
# and the `payload.interval` toloka-kit's TolokaRetry reads (src/client/primitives/retry.py).
# No Retry-After header: toloka-kit waits the interval out itself.
def quota_429(interval: str) -> httpx.Response:
    return httpx.Response(
        429,
        json={
            "request_id": "337d68d1-974d-42b1-a2d0-6234f6373eed",
            "code": "TOO_MANY_REQUESTS",
            "message": "Too many requests",
            "payload": {"interval": interval},
        },
    )


def test_a_per_minute_pool_quota_is_waited_out_as_toloka_kit_does() -> None:
    r = router()
    r.get("/v1/pools").respond(200, json={"items": [], "has_more": False})
    created = r.post("/v1/pools").mock(
        side_effect=[quota_429("MIN"), quota_429("MIN"), httpx.Response(201, json=pool_json())]
    )
    sleeps: list[float] = []
    with connector_on(r, sleeps=sleeps) as connector:
        assert connector.create_batch(SPEC, idempotency_key=KEY) == BATCH
    assert created.call_count == 3
    assert sleeps == [60.0, 60.0]  # not the 0.5 s, 1 s back-off that gave up after ~15 s


def test_a_per_minute_quota_on_a_read_is_waited_out_by_the_seam() -> None:
    r = router()
    got = r.get(f"/v1/pools/{POOL_ID}").mock(
        side_effect=[quota_429("MIN"), httpx.Response(200, json=pool_json())]
    )
    sleeps: list[float] = []
    with connector_on(r, sleeps=sleeps) as connector:
        assert connector.client.get_pool(POOL_ID).id == POOL_ID
    assert got.call_count == 2
    assert sleeps == [60.0]


@pytest.mark.parametrize("interval", ["HOUR", "DAY"])
def test_an_hourly_or_daily_quota_fails_at_once(interval: str) -> None:
    r = router()
    r.get("/v1/pools").respond(200, json={"items": [], "has_more": False})
    created = r.post("/v1/pools").mock(return_value=quota_429(interval))
    sleeps: list[float] = []
    with connector_on(r, sleeps=sleeps) as connector, pytest.raises(RateLimited):
        connector.create_batch(SPEC, idempotency_key=KEY)
    assert created.call_count == 1
    assert sleeps == []


def test_create_batch_checks_the_projects_spec_and_currency() -> None:
    r = router()
    broken = project_json("101", "compare")
    del broken["task_spec"]["input_spec"]["crowdloop_key"]
    broken["task_spec"]["output_spec"] = {"result": {"type": "string"}}
    r.get("/v1/projects/101").respond(200, json=broken)
    created = r.post("/v1/pools").respond(201, json=pool_json())
    with connector_on(r, check_project=True) as connector:
        with pytest.raises(InvalidRequest, match=r"crowdloop_key.*output field 'choice'"):
            connector.create_batch(SPEC, idempotency_key=KEY)
        euro = SPEC.model_copy(update={"reward": Money(amount=Decimal("1"), currency="EUR")})
        with pytest.raises(InvalidRequest, match="USD"):
            connector._pool_body(euro, "101", KEY)
    assert not created.called


def test_auth_failure_is_not_retried_and_hides_the_key() -> None:
    r = router()
    listed = r.get("/v1/pools").respond(
        401, json={"code": "AUTHENTICATION_ERROR", "message": "Authentication failed"}
    )
    sleeps: list[float] = []
    with connector_on(r, sleeps=sleeps) as connector, pytest.raises(AuthError) as caught:
        connector.find_batch(KEY)
    assert "[toloka]" in str(caught.value)
    assert API_KEY not in str(caught.value)
    assert listed.call_count == 1 and sleeps == []


# --- tasks ---------------------------------------------------------------------------------------


def _upload_routes(
    r: respx.Router, *, pool: dict[str, Any] | None = None, first_status: str = "RUNNING"
) -> tuple[respx.Route, respx.Route, list[dict[str, Any]]]:
    r.get(f"/v1/pools/{POOL_ID}").respond(200, json=pool or pool_json())
    log: list[dict[str, Any]] = []

    def upload(request: httpx.Request) -> httpx.Response:
        op_id = request.url.params["operation_id"]
        log.clear()
        for i, task in enumerate(json.loads(request.content)):
            log.append(
                {
                    "type": "TASK_CREATE",
                    "success": True,
                    "input": task,
                    "output": {"task_id": f"task-{i}"},
                }
            )
        return httpx.Response(
            202,
            json={
                "id": op_id,
                "type": "TASK.BATCH_CREATE",
                "status": first_status,
                "submitted": "2024-05-01T12:00:00.000",
                "progress": 0,
                "parameters": {
                    "open_pool": True,
                    "allow_defaults": False,
                    "skip_invalid_items": False,
                },
            },
        )

    posted = r.post("/v1/tasks").mock(side_effect=upload)
    states = iter(["RUNNING", "SUCCESS"])
    polled = r.get(path__regex=r"^/v1/operations/(?P<op_id>[^/]+)$").mock(
        side_effect=lambda request, op_id: httpx.Response(
            200,
            json={
                "id": op_id,
                "type": "TASK.BATCH_CREATE",
                "status": next(states, "SUCCESS"),
                "details": {"total_count": len(log), "success_count": len(log)},
            },
        )
    )
    r.get(path__regex=r"^/v1/operations/[^/]+/log$").mock(
        side_effect=lambda request: httpx.Response(200, json=log)
    )
    return posted, polled, log


def test_add_items_uploads_one_async_operation_with_a_derived_operation_id() -> None:
    r = router()
    posted, polled, _ = _upload_routes(r)
    sleeps: list[float] = []
    batch_items = items(3, exclude=("toloker-author",))
    with connector_on(r, sleeps=sleeps) as connector:
        result = connector.add_items(BATCH, batch_items, idempotency_key="ledger-1")
    assert result.external_ids == {f"camp-1:item-{i}.0": f"task-{i}" for i in range(3)}
    params = params_of(posted.calls[0])
    expected_op = uuid.uuid5(
        OPERATION_NAMESPACE, "\n".join(["ledger-1", *(i.key for i in batch_items)])
    )
    assert params == {
        "async_mode": "true",
        "allow_defaults": "false",
        "skip_invalid_items": "false",
        "open_pool": "true",
        "operation_id": str(expected_op),
    }
    sent = body_of(posted.calls[0])
    assert sent[0] == {
        "pool_id": POOL_ID,
        "input_values": {
            "crowdloop_key": "camp-1:item-0.0",
            "kind": "compare",
            "instruction": "Which answer is better?",
            "prompt": "Top 5 rivers, take 0",
            "left": "1. Nile 2. Amazon",
            "right": "1. Danube 2. Rhine",
        },
        "overlap": 3,
        "unavailable_for": ["toloker-author"],
    }
    assert polled.call_count == 2 and sleeps == [1.0]  # RUNNING, then SUCCESS after a poll


def test_add_items_replayed_finds_the_operation_instead_of_uploading_again() -> None:
    r = router()
    r.get(f"/v1/pools/{POOL_ID}").respond(200, json=pool_json())
    posted = r.post("/v1/tasks").respond(
        409,
        json={
            "request_id": "r-9",
            "code": "OPERATION_ALREADY_EXISTS",
            "message": "Operation already exists",
        },
    )
    r.get(path__regex=r"^/v1/operations/[^/]+$").mock(
        side_effect=lambda request: httpx.Response(
            200,
            json={
                "id": request.url.path.rsplit("/", 1)[-1],
                "status": "SUCCESS",
                "type": "TASK.BATCH_CREATE",
            },
        )
    )
    log = [
        {
            "type": "TASK_CREATE",
            "success": True,
            "input": {"pool_id": POOL_ID, "input_values": {"crowdloop_key": f"camp-1:item-{i}.0"}},
            "output": {"task_id": f"task-{i}"},
        }
        for i in range(2)
    ]
    r.get(path__regex=r"^/v1/operations/[^/]+/log$").respond(200, json=log)
    with connector_on(r) as connector:
        ids = connector.add_items(BATCH, items(2), idempotency_key="ledger-1").external_ids
    assert ids == {"camp-1:item-0.0": "task-0", "camp-1:item-1.0": "task-1"}
    assert posted.call_count == 1


def test_a_failed_upload_reports_the_validation_errors_from_the_log() -> None:
    r = router()
    r.get(f"/v1/pools/{POOL_ID}").respond(200, json=pool_json())
    r.post("/v1/tasks").respond(
        202, json={"id": "op-1", "status": "PENDING", "type": "TASK.BATCH_CREATE"}
    )
    r.get("/v1/operations/op-1").respond(
        200, json={"id": "op-1", "status": "FAIL", "type": "TASK.BATCH_CREATE"}
    )
    r.get("/v1/operations/op-1/log").respond(
        200,
        json=[
            {
                "type": "TASK_VALIDATE",
                "success": False,
                "input": {"pool_id": POOL_ID},
                "output": {
                    "input_values.left": {
                        "code": "VALUE_REQUIRED",
                        "message": "Value must be present",
                    }
                },
            },
        ],
    )
    with connector_on(r) as connector, pytest.raises(InvalidRequest, match="VALUE_REQUIRED"):
        connector.add_items(BATCH, items(1), idempotency_key="ledger-1")


def test_a_stopped_pool_is_not_reopened_by_add_items() -> None:
    r = router()
    stopped = pool_json(status="CLOSED", last_close_reason="MANUAL")
    posted, _, _ = _upload_routes(r, pool=stopped, first_status="SUCCESS")
    with connector_on(r) as connector:
        connector.add_items(BATCH, items(1), idempotency_key="ledger-1")
    assert params_of(posted.calls[0])["open_pool"] == "false"


def test_ids_come_from_a_task_scan_when_the_operation_log_is_gone() -> None:
    r = router()
    r.get(f"/v1/pools/{POOL_ID}").respond(200, json=pool_json())
    r.post("/v1/tasks").respond(
        202, json={"id": "op-1", "status": "SUCCESS", "type": "TASK.BATCH_CREATE"}
    )
    r.get("/v1/operations/op-1/log").respond(
        409, json={"code": "OPERATION_LOGS_ARCHIVED", "message": "Logs are archived"}
    )
    pages = [
        [
            {
                "id": "t-1",
                "pool_id": POOL_ID,
                "overlap": 3,
                "input_values": {"image": "not a crowdloop task"},
            },
            {
                "id": "t-2",
                "pool_id": POOL_ID,
                "overlap": 3,
                "input_values": {"crowdloop_key": "camp-1:item-0.0", "kind": "compare"},
            },
        ],
        [
            {
                "id": "t-3",
                "pool_id": POOL_ID,
                "overlap": 3,
                "input_values": {"crowdloop_key": "camp-1:item-1.0", "kind": "compare"},
            }
        ],
    ]
    listed = r.get("/v1/tasks").mock(
        side_effect=[
            httpx.Response(200, json={"items": pages[0], "has_more": True}),
            httpx.Response(200, json={"items": pages[1], "has_more": False}),
        ]
    )
    with connector_on(r, task_page_limit=2) as connector:
        ids = connector.add_items(BATCH, items(2), idempotency_key="ledger-1").external_ids
    assert ids == {"camp-1:item-0.0": "t-2", "camp-1:item-1.0": "t-3"}
    assert params_of(listed.calls[0]) == {"pool_id": POOL_ID, "sort": "id", "limit": "2"}
    assert params_of(listed.calls[1])["id_gt"] == "t-2"


def test_writing_and_verify_tasks_carry_their_own_fields() -> None:
    r = router()
    posted, _, _ = _upload_routes(r, first_status="SUCCESS")
    writing = TaskItem(
        key="w-1",
        group="g-1",
        overlap=1,
        payload=WriteResponseTask(instruction="Answer it.", prompt="Top 5 lakes"),
    )
    verify = TaskItem(
        key="v-1",
        group="g-2",
        overlap=2,
        payload=VerifyTask(instruction="Is it fine?", target="response", prompt="p", text="t"),
    )
    with connector_on(r) as connector:
        connector.add_items(BATCH, [writing, verify], idempotency_key="ledger-w")
    sent = [task["input_values"] for task in body_of(posted.calls[0])]
    assert sent == [
        {
            "crowdloop_key": "w-1",
            "kind": "write_response",
            "instruction": "Answer it.",
            "prompt": "Top 5 lakes",
        },
        {
            "crowdloop_key": "v-1",
            "kind": "verify",
            "instruction": "Is it fine?",
            "target": "response",
            "prompt": "p",
            "text": "t",
        },
    ]


# --- pool control ---------------------------------------------------------------------------------


def test_start_opens_and_polls_an_empty_pool_is_left_to_add_items() -> None:
    r = router()
    opened = r.post(f"/v1/pools/{POOL_ID}/open").mock(
        side_effect=[
            toloka_error(409, "EMPTY_POOL", "Pool has no tasks"),
            httpx.Response(
                202,
                json={
                    "id": "op-open",
                    "type": "POOL.OPEN",
                    "status": "PENDING",
                    "parameters": {"pool_id": POOL_ID},
                },
            ),
            httpx.Response(204),
            toloka_error(409, "INAPPROPRIATE_STATUS", "pool is archived"),
        ]
    )
    polled = r.get("/v1/operations/op-open").respond(
        200, json={"id": "op-open", "type": "POOL.OPEN", "status": "SUCCESS"}
    )
    closed = r.post(f"/v1/pools/{POOL_ID}/close").respond(204)
    with connector_on(r) as connector:
        connector.start(BATCH)  # empty: nothing to open yet
        connector.start(BATCH)  # opens, polls the operation
        connector.start(BATCH)  # open already
        with pytest.raises(InvalidRequest, match="INAPPROPRIATE_STATUS"):
            connector.start(BATCH)
        connector.stop(BATCH, reason="campaign done")  # closed already: 204
    assert opened.call_count == 4 and polled.call_count == 1 and closed.call_count == 1


# --- submissions ---------------------------------------------------------------------------------


def fake_connector(
    fake: FakeToloka, sleeps: list[float] | None = None, **options: Any
) -> TolokaConnector:
    credentials = TolokaCredentials(api_key=SecretStr(API_KEY), base_url=BASE)
    client = credentials.get_client(
        transport=fake.transport(),
        retry=RetryPolicy(attempts=3),
        sleep=sleeps.append if sleeps is not None else (lambda _: None),
    )
    return TolokaConnector(client, toloka_options(**options), now=lambda: NOW)


def started(fake: FakeToloka, connector: TolokaConnector, n: int) -> BatchRef:
    batch = connector.create_batch(SPEC, idempotency_key=KEY)
    connector.add_items(batch, items(n), idempotency_key="ledger-1")
    connector.start(batch)
    return batch


def read_all(
    connector: TolokaConnector, batch: BatchRef, cursor: str | None = None
) -> tuple[list[Submission], str | None]:
    got: list[Submission] = []
    for page in connector.iter_submissions(batch, cursor=cursor):
        got.extend(page.submissions)
        assert not page.quarantined
        cursor = page.cursor
    return got, cursor


def test_each_task_of_a_suite_is_one_submission_and_pages_resume() -> None:
    fake = FakeToloka()
    with fake_connector(fake) as connector:
        batch = started(fake, connector, 5)
        answered = fake.work(batch.external_id)  # 15 answers in suites of two tasks
        pages = list(connector.iter_submissions(batch, cursor=None))
        status = connector.get_status(batch)
    got = [s for page in pages for s in page.submissions]
    assert answered == len(got) == 15
    assert status.assignments_total == 15 and status.complete
    assert status.state is BatchState.OPEN and status.tasks == 5
    assert len({s.external_id for s in got}) == 15
    assert all(isinstance(s.answer, PreferenceAnswer) for s in got)
    first = got[0]
    assignment_id, _, index = first.external_id.rpartition(":")
    assert fake.assignments[assignment_id]["user_id"] == first.worker_id
    assert (
        fake.assignments[assignment_id]["tasks"][int(index)]["input_values"]["crowdloop_key"]
        == first.task_key
    )
    # Cursor is "<submitted>|<assignment id>" of the last assignment read.
    assert pages[-1].cursor is not None
    submitted, _, last_id = pages[-1].cursor.partition("|")
    assert fake.assignments[last_id]["submitted"] == submitted
    assert [p.has_more for p in pages] == [True] * (len(pages) - 1) + [False]


def test_a_late_submission_with_a_smaller_id_is_not_skipped() -> None:
    fake = FakeToloka()
    with fake_connector(fake) as connector:
        batch = started(fake, connector, 2)
        fake.work(batch.external_id)
        before, cursor = read_all(connector, batch)
        # Issued first (smallest id), submitted last: `id_gt` paging would never see it.
        task_ids = sorted(t for t in fake.tasks if fake.tasks[t]["pool_id"] == batch.external_id)
        late = fake.add_assignment(
            batch.external_id,
            task_ids[:1],
            user_id="toloker-late",
            submitted=fake.tick(5),
            assignment_id="0000000000--000000000000000000000000",
        )
        after, end = read_all(connector, batch, cursor)
        again, _ = read_all(connector, batch, end)
    assert len(before) == 6
    assert [s.external_id for s in after] == [f"{late['id']}:0"]
    assert again == [], "reading from the last cursor repeated a submission"
    calls = [c for c in fake.router.calls if c.request.url.path.endswith("/assignments")]
    sent = params_of(calls[-1])
    assert sent["status"] == "SUBMITTED,ACCEPTED,REJECTED" and sent["pool_id"] == batch.external_id


def test_a_cursor_in_the_middle_of_a_shared_instant_reads_the_rest_of_it() -> None:
    fake = FakeToloka()
    with fake_connector(fake, page_limit=1) as connector:
        batch = started(fake, connector, 2)
        task_ids = sorted(fake.tasks)
        same = fake.tick()
        for n, assignment_id in enumerate(["p-3", "p-1", "p-2"]):
            fake.add_assignment(
                batch.external_id,
                task_ids[n % 2 : n % 2 + 1],
                user_id=f"t-{n}",
                submitted=same,
                assignment_id=assignment_id,
            )
        first = next(connector.iter_submissions(batch, cursor=None))
        rest, _ = read_all(connector, batch, first.cursor)
    assert [s.external_id for s in first.submissions] == ["p-1:0"]
    assert [s.external_id for s in rest] == ["p-2:0", "p-3:0"]
    tie = [
        params_of(c)
        for c in fake.router.calls
        if c.request.url.path.endswith("/assignments") and "id_gt" in c.request.url.params
    ]
    assert tie[0] == {
        "pool_id": batch.external_id,
        "status": "SUBMITTED,ACCEPTED,REJECTED",
        "limit": "1",
        "sort": "id",
        "submitted_gte": same,
        "submitted_lte": same,
        "id_gt": "p-1",
    }


def assignment(**overrides: Any) -> dict[str, Any]:
    """An assignment as GET /v1/assignments lists it (get-assignment-id.md)."""
    base = {
        "id": "00014495f0--60213f7c25a6b03f8b6b1b48",
        "task_suite_id": "00014495f0--60213f7c25a6b03f8b6b1b40",
        "pool_id": POOL_ID,
        "user_id": "b4d8bcc33403cae9eb69991c8bb90bdc",
        "status": "SUBMITTED",
        "reward": 0.1,
        "tasks": [
            {"id": "task-0", "input_values": {"crowdloop_key": "k-0", "kind": "compare"}},
            {"id": "task-1", "input_values": {"crowdloop_key": "k-1", "kind": "compare"}},
        ],
        "solutions": [
            {"output_values": {"choice": "left"}},
            {"output_values": {"choice": "right"}},
        ],
        "mixed": True,
        "automerged": False,
        "created": "2024-05-01T12:00:00.000",
        "submitted": "2024-05-01T12:01:00.000",
    }
    return base | overrides


def test_garbled_answers_are_quarantined_with_reason_and_raw_json() -> None:
    r = router()
    page = [
        assignment(),
        assignment(
            id="a-2",
            solutions=[{"output_values": {"choice": "B"}}, {"output_values": {"result": "OK"}}],
        ),
        assignment(
            id="a-3",
            tasks=[{"id": "x", "input_values": {"image": "1.png"}}],
            solutions=[{"output_values": {"result": "OK"}}],
        ),
        assignment(id="a-4", solutions=[{"output_values": {"choice": "tie"}}]),
        {"id": "a-5", "status": "SUBMITTED", "submitted": "2024-05-01T12:02:00.000", "tasks": []},
        assignment(
            id="a-6",
            tasks=[{"id": "w", "input_values": {"crowdloop_key": "k-w", "kind": "write_response"}}],
            solutions=[{"output_values": {"text": "1. Baikal"}}],
            submitted="2024-05-01T12:03:00.000",
        ),
    ]
    r.get("/v1/assignments").respond(200, json={"items": page, "has_more": False})
    with connector_on(r) as connector:
        (only,) = list(connector.iter_submissions(BATCH, cursor=None))
    ok = {s.external_id: s for s in only.submissions}
    assert set(ok) == {f"{page[0]['id']}:0", f"{page[0]['id']}:1", "a-4:0", "a-6:0"}
    assert ok[f"{page[0]['id']}:1"].answer == PreferenceAnswer(choice="right")
    assert ok["a-6:0"].answer == TextAnswer(text="1. Baikal")
    assert ok["a-4:0"].submitted_at.tzinfo is not None
    bad = {q.external_id: q for q in only.quarantined}
    assert set(bad) == {"a-2:0", "a-2:1", "a-3:0", "a-4:1", "a-5"}
    assert "choice" in bad["a-2:0"].reason and bad["a-2:0"].task_key == "k-0"
    assert json.loads(bad["a-2:0"].raw)["solution"] == {"output_values": {"choice": "B"}}
    assert "output field 'choice' missing" in bad["a-2:1"].reason
    assert "not a crowdloop task" in bad["a-3:0"].reason and bad["a-3:0"].task_key is None
    assert "no solution" in bad["a-4:1"].reason
    assert "unreadable assignment" in bad["a-5"].reason and bad["a-5"].worker_id is None
    assert only.cursor == "2024-05-01T12:03:00.000|a-6" and only.has_more is False


def test_listing_waits_out_429_and_retries_5xx() -> None:
    r = router()
    listed = r.get("/v1/assignments").mock(
        side_effect=[
            httpx.Response(
                429,
                headers={"Retry-After": "2"},
                json={"code": "TOO_MANY_REQUESTS", "message": "Too many requests"},
            ),
            httpx.Response(503, json={"code": "REMOTE_SERVICE_UNAVAILABLE", "message": "later"}),
            httpx.Response(200, json={"items": [assignment()], "has_more": False}),
        ]
    )
    sleeps: list[float] = []
    with connector_on(r, sleeps=sleeps) as connector:
        got = [s for p in connector.iter_submissions(BATCH, cursor=None) for s in p.submissions]
    assert len(got) == 2 and listed.call_count == 3
    assert sleeps == [2.0, 1.0]


def test_a_bad_cursor_is_refused() -> None:
    with connector_on(router()) as connector, pytest.raises(InvalidRequest, match="cursor"):
        next(connector.iter_submissions(BATCH, cursor="00014495f0--60213f7c"))


# --- review and blocking ---------------------------------------------------------------------


def test_review_patches_each_assignment_once_reject_wins() -> None:
    r = router()
    patched = r.patch(path__regex=r"^/v1/assignments/[^/]+$").respond(
        200, json={"status": "ACCEPTED", "public_comment": ""}
    )
    decisions = [
        ReviewDecision(submission_id="a-1:0", accept=True),
        ReviewDecision(submission_id="a-1:1", accept=True),
        ReviewDecision(submission_id="a-2:0", accept=True),
        ReviewDecision(submission_id="a-2:1", accept=False, comment="failed control tasks"),
    ]
    with connector_on(r) as connector:
        connector.review(BATCH, decisions)
    sent = {c.request.url.path.rsplit("/", 1)[-1]: body_of(c) for c in patched.calls}
    assert sent == {
        "a-1": {"status": "ACCEPTED", "public_comment": "Accepted"},
        "a-2": {"status": "REJECTED", "public_comment": "failed control tasks"},
    }


def test_a_repeated_or_impossible_review_is_not_an_error() -> None:
    r = router()
    conflict = {
        "request_id": "r-2",
        "code": "INAPPROPRIATE_STATUS",
        "message": "This or related resource is in inappropriate status",
        "payload": {"appropriate_statuses": ["SUBMITTED"]},
    }
    r.patch(path__regex=r"^/v1/assignments/[^/]+$").respond(409, json=conflict)
    statuses = {"a-1": "ACCEPTED", "a-2": "ACCEPTED", "a-3": "SUBMITTED"}
    r.get(path__regex=r"^/v1/assignments/(?P<aid>[^/]+)$").mock(
        side_effect=lambda request, aid: httpx.Response(
            200, json=assignment(id=aid, status=statuses[aid])
        )
    )
    with connector_on(r) as connector:
        connector.review(BATCH, [ReviewDecision(submission_id="a-1:0", accept=True)])
        # Accepted already (e.g. auto-accepted): Toloka cannot reject it any more.
        connector.review(BATCH, [ReviewDecision(submission_id="a-2:0", accept=False)])
        with pytest.raises(InvalidRequest, match="INAPPROPRIATE_STATUS"):
            connector.review(BATCH, [ReviewDecision(submission_id="a-3:0", accept=True)])


def test_review_against_the_fake_is_idempotent() -> None:
    fake = FakeToloka()
    with fake_connector(fake) as connector:
        batch = started(fake, connector, 2)
        fake.work(batch.external_id)
        got, _ = read_all(connector, batch)
        decisions = [ReviewDecision(submission_id=s.external_id, accept=True) for s in got]
        connector.review(batch, decisions)
        connector.review(batch, decisions)
    assert {a["status"] for a in fake.assignments.values()} == {"ACCEPTED"}


def test_block_worker_maps_scopes_to_user_restrictions() -> None:
    r = router()
    put = r.put("/v1/user-restrictions").respond(200, json={"id": "54", "scope": "PROJECT"})
    with connector_on(
        r, project_id=None, project_ids={"compare": "101", "responses": "102"}
    ) as connector:
        connector.block_worker("w-1", scope=BlockScope.CAMPAIGN, reason="x" * 600)
        connector.block_worker("w-1", scope=BlockScope.ACCOUNT, reason="failed quality checks")
        with pytest.raises(NotSupported, match="scope batch"):
            connector.block_worker("w-1", scope=BlockScope.BATCH, reason="no pool given")
    sent = [body_of(c) for c in put.calls]
    assert sent == [
        {"scope": "PROJECT", "user_id": "w-1", "project_id": "101", "private_comment": "x" * 499},
        {"scope": "PROJECT", "user_id": "w-1", "project_id": "102", "private_comment": "x" * 499},
        {"scope": "ALL_PROJECTS", "user_id": "w-1", "private_comment": "failed quality checks"},
    ]


# --- qualifications (skills) ---------------------------------------------------------------------

EXAM = "crowdloop-camp-1-exam"
GATED = SPEC.model_copy(update={"required_qualification": EXAM})


def skill_json(skill_id: str, name: str = EXAM) -> dict[str, Any]:
    """A skill as POST /v1/skills and GET /v1/skills return it (create-skill.md)."""
    return {
        "id": skill_id,
        "name": name,
        "private_comment": f"crowdloop qualification {name}",
        "hidden": True,
        "deprecated": False,
        "owner": {"id": "c3a50f44cd3e1b8202465569ced289eb", "myself": True},
        "training": False,
        "created": "2024-05-01T12:00:00.000",
        "global": False,
    }


def skills_page(*skills: dict[str, Any], has_more: bool = False) -> httpx.Response:
    return httpx.Response(200, json={"items": list(skills), "has_more": has_more})


def user_skill_json(skill_id: str = "44", user_id: str = "w-1") -> dict[str, Any]:
    """PUT /v1/user-skills answer (set-skill)."""
    return {
        "id": "43",
        "skill_id": skill_id,
        "user_id": user_id,
        "value": 100,
        "exact_value": 100,
        "created": "2024-05-01T12:00:00.000",
        "modified": "2024-05-01T12:00:00.000",
    }


def test_ensure_qualification_looks_the_skill_up_by_name_then_creates_it_once() -> None:
    r = router()
    listed = r.get("/v1/skills").mock(return_value=skills_page())
    created = r.post("/v1/skills").respond(201, json=skill_json("44"))
    with connector_on(r) as connector:
        connector.ensure_qualification(EXAM)
        connector.ensure_qualification(EXAM)  # known now: no call at all
    assert listed.call_count == 1 and created.call_count == 1
    assert params_of(listed.calls[0]) == {"name": EXAM, "sort": "id"}
    assert created.calls[0].request.headers["authorization"] == f"ApiKey {API_KEY}"
    assert body_of(created.calls[0]) == {
        "name": EXAM,
        "private_comment": f"crowdloop qualification {EXAM}",
        "hidden": True,
    }


def test_an_existing_skill_is_reused_lowest_id_of_the_exact_name() -> None:
    r = router()
    listed = r.get("/v1/skills").mock(
        side_effect=[
            skills_page(skill_json("39", EXAM.upper()), has_more=True),
            skills_page(skill_json("44"), skill_json("47")),
        ]
    )
    created = r.post("/v1/skills").respond(201, json=skill_json("50"))
    put = r.put("/v1/user-skills").respond(200, json=user_skill_json())
    with connector_on(r) as connector:
        connector.grant_qualification("w-1", EXAM)
    assert not created.called
    assert params_of(listed.calls[1]) == {"name": EXAM, "sort": "id", "id_gt": "39"}
    assert body_of(put.calls[0])["skill_id"] == "44"


def test_grant_sets_the_user_skill_and_a_repeat_changes_nothing() -> None:
    r = router()
    listed = r.get("/v1/skills").mock(return_value=skills_page(skill_json("44")))
    put = r.put("/v1/user-skills").mock(
        side_effect=[
            httpx.Response(503, json={"code": "REMOTE_SERVICE_UNAVAILABLE", "message": "x"}),
            httpx.Response(200, json=user_skill_json()),
            httpx.Response(200, json=user_skill_json()),
        ]
    )
    sleeps: list[float] = []
    with connector_on(r, sleeps=sleeps) as connector:
        connector.grant_qualification("w-1", EXAM)
        connector.grant_qualification("w-1", EXAM)
    sent = [body_of(c) for c in put.calls]
    assert sent == [{"skill_id": "44", "user_id": "w-1", "value": 100}] * 3
    assert sleeps == [0.5], "a PUT is a set: the seam retries it"
    assert listed.call_count == 1


def test_a_skill_created_behind_a_5xx_is_found_not_created_again() -> None:
    r = router()
    listed = r.get("/v1/skills").mock(side_effect=[skills_page(), skills_page(skill_json("44"))])
    created = r.post("/v1/skills").respond(500, json={"code": "INTERNAL_ERROR", "message": "x"})
    put = r.put("/v1/user-skills").respond(200, json=user_skill_json())
    sleeps: list[float] = []
    with connector_on(r, sleeps=sleeps) as connector:
        connector.grant_qualification("w-1", EXAM)
    assert created.call_count == 1, "a skill create is sent once, then looked up"
    assert listed.call_count == 2 and sleeps == []
    assert body_of(put.calls[0])["skill_id"] == "44"


def test_a_skill_create_lost_or_rate_limited_is_sent_again() -> None:
    r = router()
    listed = r.get("/v1/skills").mock(return_value=skills_page())
    created = r.post("/v1/skills").mock(
        side_effect=[
            httpx.Response(503, json={"code": "REMOTE_SERVICE_UNAVAILABLE", "message": "x"}),
            httpx.Response(
                429,
                headers={"Retry-After": "6"},
                json={"code": "TOO_MANY_REQUESTS", "message": "x", "payload": {"interval": "MIN"}},
            ),
            httpx.Response(201, json=skill_json("44")),
        ]
    )
    sleeps: list[float] = []
    with connector_on(r, sleeps=sleeps, attempts=3) as connector:
        connector.ensure_qualification(EXAM)
    assert created.call_count == 3
    assert listed.call_count == 2, "looked up first and after the 5xx, not after the 429"
    assert sleeps == [0.5, 6.0]


@pytest.mark.parametrize(
    ("operator_filter", "expected_head"),
    [
        (None, []),
        (
            {"and": [{"category": "profile", "key": "languages", "operator": "IN", "value": "EN"}]},
            [{"category": "profile", "key": "languages", "operator": "IN", "value": "EN"}],
        ),
        (
            {"or": [{"category": "profile", "key": "country", "operator": "EQ", "value": "GB"}]},
            [{"or": [{"category": "profile", "key": "country", "operator": "EQ", "value": "GB"}]}],
        ),
        (
            {"category": "computed", "key": "client_type", "operator": "EQ", "value": "BROWSER"},
            [
                {
                    "or": [
                        {
                            "category": "computed",
                            "key": "client_type",
                            "operator": "EQ",
                            "value": "BROWSER",
                        }
                    ]
                }
            ],
        ),
    ],
)
def test_a_gated_pool_filters_on_the_skill_beside_the_operators_filter(
    operator_filter: dict[str, Any] | None, expected_head: list[dict[str, Any]]
) -> None:
    r = router()
    r.get("/v1/pools").respond(200, json={"items": [], "has_more": False})
    r.get("/v1/skills").mock(return_value=skills_page(skill_json("44")))
    created = r.post("/v1/pools").respond(201, json=pool_json())
    extra = {"filter": operator_filter} if operator_filter is not None else {}
    with connector_on(r, pool_extra=extra) as connector:
        connector.create_batch(GATED, idempotency_key=KEY)
        connector.create_batch(SPEC, idempotency_key=f"{KEY}-open")
    gated, open_ = (body_of(c) for c in created.calls)
    skill = {"category": "skill", "key": "44", "operator": "GTE", "value": 1}
    assert gated["filter"] == {"and": [*expected_head, {"or": [skill]}]}
    if operator_filter is None:
        assert "filter" not in open_
    else:
        assert open_["filter"] == operator_filter


def test_only_holders_answer_a_gated_pool_even_those_granted_after_it_opened() -> None:
    fake = FakeToloka()
    with fake_connector(fake) as connector:
        connector.ensure_qualification(EXAM)
        batch = connector.create_batch(GATED, idempotency_key=KEY)
        connector.add_items(batch, items(2), idempotency_key="ledger-1")  # overlap 3
        connector.start(batch)
        assert fake.work(batch.external_id) == 0, "nobody holds the skill yet"
        for worker in ("toloker-004", "toloker-009", "toloker-009"):
            connector.grant_qualification(worker, EXAM)
        assert fake.work(batch.external_id) == 4  # two holders, two tasks each
        connector.grant_qualification("toloker-002", EXAM)
        assert fake.work(batch.external_id) == 2
        got, _ = read_all(connector, batch)
        assert {s.worker_id for s in got} == {"toloker-002", "toloker-004", "toloker-009"}
        assert len(got) == 6
    with fake_connector(fake) as rerun:  # a fresh connector finds the same skill by name
        rerun.ensure_qualification(EXAM)
        rerun.grant_qualification("toloker-002", EXAM)
    assert len(fake.skills) == 1
    assert sorted(user for _, user in fake.user_skills) == [
        "toloker-002",
        "toloker-004",
        "toloker-009",
    ]


# --- the whole flow on the fake ------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["after-5xx", "replay"])
def test_tasks_are_never_created_twice(fault: str) -> None:
    fake = FakeToloka()
    calls: list[str] = []

    def flaky(
        handler: Callable[[httpx.Request], httpx.Response],
    ) -> Callable[[httpx.Request], httpx.Response]:
        def serve(request: httpx.Request) -> httpx.Response:
            response = handler(request)
            if request.url.path.endswith("/v1/tasks") and request.method == "POST":
                calls.append(request.url.params["operation_id"])
                if fault == "after-5xx" and len(calls) == 1:
                    return httpx.Response(
                        500, json={"code": "INTERNAL_ERROR", "message": "Internal Error"}
                    )
            return response

        return serve

    credentials = TolokaCredentials(api_key=SecretStr(API_KEY), base_url=BASE)
    client = credentials.get_client(
        transport=httpx.MockTransport(flaky(fake.router.handler)),
        retry=RetryPolicy(attempts=3),
        sleep=lambda _: None,
    )
    with TolokaConnector(client, toloka_options(), now=lambda: NOW) as connector:
        batch = connector.create_batch(SPEC, idempotency_key=KEY)
        first = connector.add_items(batch, items(4), idempotency_key="ledger-1")
        if fault == "replay":
            assert connector.add_items(batch, items(4), idempotency_key="ledger-1") == first
        assert connector.find_tasks(batch, [i.key for i in items(5)]) == first.external_ids
    assert fake.created() == (1, 4)
    assert len(calls) == 2 and calls[0] == calls[1], "the retry reused the operation id"
