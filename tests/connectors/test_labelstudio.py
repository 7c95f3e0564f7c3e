"""LabelStudioConnector against respx routers shaped like Label Studio 1.23's REST API:
what is sent (paths, query params, auth headers, bodies), auth token exchange and refresh,
pagination, retries and reconciliation of creates, and how annotations become submissions
or quarantined rows."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from crowdloop.connectors._http import RetryPolicy
from crowdloop.connectors.errors import AuthError, InvalidRequest, NotSupported, TransientError
from crowdloop.connectors.labelstudio.client import jwt_expiry, looks_like_jwt
from crowdloop.connectors.labelstudio.connector import (
    KEY_LINE,
    LABEL_CONFIGS,
    LabelStudioConnector,
    key_token,
    project_title,
)
from crowdloop.connectors.labelstudio.credentials import LabelStudioCredentials
from crowdloop.connectors.testing import compare_items
from crowdloop.models.domain import (
    BatchRef,
    BatchSpec,
    BatchState,
    BlockScope,
    Capability,
    Money,
    PreferenceAnswer,
    ReviewDecision,
    Stage,
    TaskItem,
    TextAnswer,
    VerdictAnswer,
    VerifyTask,
    WritePromptTask,
    WriteResponseTask,
)
from tests.contract.harness_labelstudio import (
    BASE,
    LEGACY_TOKEN,
    PERSONAL_TOKEN,
    FakeLabelStudio,
    make_jwt,
)

FAST = RetryPolicy(attempts=4, base_delay_s=0.01, max_delay_s=0.05)
SPEC = BatchSpec(
    name="camp-1 / compare",
    stage=Stage.COMPARE,
    instruction="Which answer is better? <b>Be fair</b>",
    reward=Money(amount=Decimal("0.05")),
    campaign_id="camp-1",
)
KEY = "crowdloop:camp-1:compare:batch"


class Clock:
    def __init__(self, now: float = 1_900_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _connector(
    transport: httpx.BaseTransport,
    *,
    token: str = PERSONAL_TOKEN,
    sleeps: list[float] | None = None,
    clock: Clock | None = None,
    **kwargs: Any,
) -> LabelStudioConnector:
    credentials = LabelStudioCredentials(base_url=BASE + "/", api_key=SecretStr(token))
    client = credentials.get_client(
        retry=FAST,
        transport=transport,
        sleep=(sleeps.append if sleeps is not None else lambda _: None),
        clock=clock,
    )
    return LabelStudioConnector(client, **kwargs)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(clock: Clock) -> FakeLabelStudio:
    return FakeLabelStudio(clock=clock)


def _calls(fake: FakeLabelStudio, method: str, path: str) -> list[httpx.Request]:
    return [
        c.request
        for c in fake.router.calls
        if c.request.method == method and c.request.url.path == path
    ]


def _choice(value: str, name: str = "preference") -> list[dict[str, Any]]:
    return [
        {
            "id": "r1",
            "from_name": name,
            "to_name": "prompt",
            "type": "choices",
            "value": {"choices": [value]},
        }
    ]


# --- auth -----------------------------------------------------------------------------------------


def test_token_shapes_are_told_apart() -> None:
    assert looks_like_jwt(PERSONAL_TOKEN)
    assert not looks_like_jwt(LEGACY_TOKEN)
    assert not looks_like_jwt("a.b.c")
    assert jwt_expiry(make_jwt({"exp": 123})) == 123.0
    assert jwt_expiry(LEGACY_TOKEN) is None
    assert LabelStudioCredentials(base_url=BASE, api_key=SecretStr(PERSONAL_TOKEN)).scheme() == (
        "personal_access_token"
    )
    assert LabelStudioCredentials(base_url=BASE, api_key=SecretStr(LEGACY_TOKEN)).scheme() == (
        "legacy_token"
    )


def test_personal_access_token_is_exchanged_and_sent_as_bearer(
    fake: FakeLabelStudio, clock: Clock
) -> None:
    with _connector(fake.transport, clock=clock) as connector:
        batch = connector.create_batch(SPEC, idempotency_key=KEY)
        connector.get_status(batch)
    refresh = _calls(fake, "POST", "/api/token/refresh/")
    assert len(refresh) == 1, "one access token serves every call while it is valid"
    assert json.loads(refresh[0].content) == {"refresh": PERSONAL_TOKEN}
    assert "authorization" not in refresh[0].headers
    api_calls = [
        c.request for c in fake.router.calls if c.request.url.path != "/api/token/refresh/"
    ]
    assert len(api_calls) >= 3
    for request in api_calls:
        scheme, _, token = request.headers["authorization"].partition(" ")
        assert scheme == "Bearer"
        assert token in fake.access_tokens and token != PERSONAL_TOKEN


def test_minted_access_tokens_are_redacted_from_errors(fake: FakeLabelStudio) -> None:
    with _connector(fake.transport) as connector:
        batch = connector.create_batch(SPEC, idempotency_key=KEY)
        seam = connector.client.seam
        (access,) = fake.access_tokens
        echo = httpx.Response(
            400,
            text=f"bad header Bearer {access}; refresh {PERSONAL_TOKEN}",
            request=httpx.Request("GET", f"{BASE}/api/projects/{batch.external_id}/"),
        )
        message = str(seam.error_for(echo))
    assert access not in message and PERSONAL_TOKEN not in message
    assert "***" in message


def test_access_token_is_renewed_before_it_expires(fake: FakeLabelStudio, clock: Clock) -> None:
    with _connector(fake.transport, clock=clock) as connector:
        batch = connector.create_batch(SPEC, idempotency_key=KEY)
        assert fake.refreshes == 1
        clock.now += 280  # 20 s left of a 300 s token: inside the renewal margin
        connector.get_status(batch)
        assert fake.refreshes == 2
        clock.now += 100
        connector.get_status(batch)
        assert fake.refreshes == 2


def test_a_401_to_an_older_access_token_refreshes_once_and_resends(
    fake: FakeLabelStudio, clock: Clock
) -> None:
    with _connector(fake.transport, clock=clock) as connector:
        batch = connector.create_batch(SPEC, idempotency_key=KEY)
        clock.now += 120
        fake.access_tokens.clear()  # e.g. the server restarted with a new secret key
        assert connector.get_status(batch).tasks == 0
    assert fake.refreshes == 2
    gets = _calls(fake, "GET", f"/api/projects/{batch.external_id}/")
    assert len(gets) == 2
    assert gets[0].headers["authorization"] != gets[1].headers["authorization"]


def test_a_401_to_a_fresh_access_token_is_an_auth_error_at_once(fake: FakeLabelStudio) -> None:
    fake.router.route(method="GET", path="/api/projects/").mock(
        return_value=httpx.Response(401, json={"detail": "Invalid token."})
    )
    with (
        _connector(fake.transport) as connector,
        pytest.raises(AuthError, match=r"\[labelstudio\].*HTTP 401"),
    ):
        connector.find_batch(KEY)
    assert len(_calls(fake, "GET", "/api/projects/")) == 1
    assert fake.refreshes == 1


def test_a_revoked_personal_access_token_is_an_auth_error(fake: FakeLabelStudio) -> None:
    bad = make_jwt({"token_type": "refresh", "exp": 4_102_444_800, "jti": "revoked"})
    with _connector(fake.transport, token=bad) as connector, pytest.raises(AuthError) as caught:
        connector.find_batch(KEY)
    assert "token_not_valid" in str(caught.value)
    assert bad not in str(caught.value)


def test_legacy_token_is_sent_as_token_header_and_never_refreshed(fake: FakeLabelStudio) -> None:
    with _connector(fake.transport, token=LEGACY_TOKEN) as connector:
        batch = connector.create_batch(SPEC, idempotency_key=KEY)
        connector.start(batch)
    assert fake.refreshes == 0
    assert not _calls(fake, "POST", "/api/token/refresh/")
    for call in fake.router.calls:
        assert call.request.headers["authorization"] == f"Token {LEGACY_TOKEN}"


def test_disabled_legacy_tokens_fail_once_without_leaking_the_token(
    fake: FakeLabelStudio,
) -> None:
    fake.legacy_enabled = False
    sleeps: list[float] = []
    with (
        _connector(fake.transport, token=LEGACY_TOKEN, sleeps=sleeps) as connector,
        pytest.raises(AuthError) as caught,
    ):
        connector.create_batch(SPEC, idempotency_key=KEY)
    assert LEGACY_TOKEN not in str(caught.value)
    assert len(fake.router.calls) == 1 and sleeps == []


# --- projects -------------------------------------------------------------------------------------


def test_create_batch_sends_a_keyed_project_and_a_replay_creates_nothing(
    fake: FakeLabelStudio,
) -> None:
    with _connector(fake.transport) as connector:
        batch = connector.create_batch(SPEC, idempotency_key=KEY)
        assert connector.create_batch(SPEC, idempotency_key=KEY) == batch
    creates = _calls(fake, "POST", "/api/projects/")
    assert len(creates) == 1
    body = json.loads(creates[0].content)
    assert body["title"] == project_title(SPEC.name, KEY)
    assert body["title"].endswith(key_token(KEY)) and len(body["title"]) <= 50
    assert body["description"].splitlines()[-1] == f"{KEY_LINE}{KEY}"
    assert body["label_config"] == LABEL_CONFIGS[Stage.COMPARE]
    assert 'alias="left"' in body["label_config"] and 'alias="tie"' in body["label_config"]
    assert body["expert_instruction"] == "<p>Which answer is better? &lt;b&gt;Be fair&lt;/b&gt;</p>"
    assert body["maximum_annotations"] == 1 and body["is_published"] is False
    lookups = _calls(fake, "GET", "/api/projects/")
    assert {r.url.params["title"] for r in lookups} == {key_token(KEY)}
    assert batch == BatchRef(connector="labelstudio", external_id="1")


def test_find_batch_needs_the_exact_key_in_the_description(fake: FakeLabelStudio) -> None:
    with _connector(fake.transport) as connector:
        batch = connector.create_batch(SPEC, idempotency_key=KEY)
        # A project someone titled alike by hand, without our key line.
        fake.projects[99] = {
            **fake.projects[1],
            "id": 99,
            "description": f"{KEY_LINE}{KEY}-other",
        }
        assert connector.find_batch(KEY) == batch
        assert connector.find_batch(KEY + "-other") is None


def test_long_names_are_cut_to_label_studios_title_limit() -> None:
    title = project_title("x" * 200, KEY)
    assert len(title) == 50 and title.endswith(key_token(KEY))
    assert project_title("  ", KEY).startswith("crowdloop ")


def test_project_lookup_pages_through_matches(fake: FakeLabelStudio) -> None:
    with _connector(fake.transport) as connector:
        connector.create_batch(SPEC, idempotency_key=KEY)
        for n in range(150):  # more than one page of look-alikes, newest first
            fake.projects[1000 + n] = {**fake.projects[1], "id": 1000 + n, "description": "x"}
        assert connector.find_batch(KEY) == BatchRef(connector="labelstudio", external_id="1")
    pages = [r.url.params["page"] for r in _calls(fake, "GET", "/api/projects/")]
    assert pages[-2:] == ["1", "2"]


def test_create_that_happened_behind_a_500_is_found_not_repeated(fake: FakeLabelStudio) -> None:
    real = fake._create_project

    def processed_then_500(request: httpx.Request) -> httpx.Response:
        real(request)
        return httpx.Response(500, json={"detail": "database is locked"})

    fake.router.routes["create_project"].side_effect = processed_then_500
    sleeps: list[float] = []
    with _connector(fake.transport, sleeps=sleeps) as connector:
        batch = connector.create_batch(SPEC, idempotency_key=KEY)
    assert len(_calls(fake, "POST", "/api/projects/")) == 1, "a create was re-sent"
    assert len(fake.projects) == 1 and batch.external_id == "1"
    assert sleeps == []


def test_create_refused_with_429_waits_retry_after_then_creates_once(
    fake: FakeLabelStudio,
) -> None:
    real = fake._create_project
    answers = iter([httpx.Response(429, headers={"Retry-After": "7"}), None])

    def limited(request: httpx.Request) -> httpx.Response:
        answer = next(answers)
        return answer if answer is not None else real(request)

    fake.router.routes["create_project"].side_effect = limited
    sleeps: list[float] = []
    with _connector(fake.transport, sleeps=sleeps) as connector:
        connector.create_batch(SPEC, idempotency_key=KEY)
    assert sleeps == [7.0]
    assert len(_calls(fake, "POST", "/api/projects/")) == 2
    assert len(fake.projects) == 1


def test_create_that_keeps_failing_gives_up_as_transient(fake: FakeLabelStudio) -> None:
    fake.router.routes["create_project"].side_effect = None
    fake.router.routes["create_project"].return_value = httpx.Response(503, text="upstream down")
    sleeps: list[float] = []
    with (
        _connector(fake.transport, sleeps=sleeps) as connector,
        pytest.raises(TransientError, match="503"),
    ):
        connector.create_batch(SPEC, idempotency_key=KEY)
    assert len(_calls(fake, "POST", "/api/projects/")) == 4
    assert sleeps == [0.01, 0.02, 0.04]
    assert fake.projects == {}


def test_invalid_request_is_not_retried(fake: FakeLabelStudio) -> None:
    fake.router.routes["create_project"].side_effect = None
    fake.router.routes["create_project"].return_value = httpx.Response(
        400, json={"label_config": ["bad config"]}
    )
    with _connector(fake.transport) as connector, pytest.raises(InvalidRequest):
        connector.create_batch(SPEC, idempotency_key=KEY)
    assert len(_calls(fake, "POST", "/api/projects/")) == 1


# --- tasks ----------------------------------------------------------------------------------------


def test_add_items_imports_keyed_tasks_and_a_replay_imports_nothing(
    fake: FakeLabelStudio,
) -> None:
    items = compare_items(key_prefix="camp-1:", n=7, overlap=3)
    with _connector(fake.transport, task_page_size=3) as connector:
        batch = connector.create_batch(SPEC, idempotency_key=KEY)
        ids = connector.add_items(batch, items, idempotency_key="k1").external_ids
        again = connector.add_items(batch, items, idempotency_key="k1").external_ids
    assert again == ids and set(ids) == {i.key for i in items}
    imports = _calls(fake, "POST", "/api/projects/1/import")
    assert len(imports) == 1
    assert imports[0].url.params["return_task_ids"] == "true"
    sent = json.loads(imports[0].content)
    assert sent[0] == {
        "data": {
            "crowdloop_key": "camp-1:item-0.0",
            "crowdloop_group": "item-0",
            "crowdloop_kind": "compare",
            "instruction": "Which answer is better?",
            "prompt": "Top 5 rivers (0)",
            "left": "Nile, Amazon (0)",
            "right": "Danube, Rhine (0)",
        },
        "meta": {"crowdloop_key": "camp-1:item-0.0", "crowdloop_group": "item-0"},
    }
    assert len(fake.tasks) == 7
    # The project's overlap was raised to what the items ask for.
    patches = _calls(fake, "PATCH", "/api/projects/1/")
    assert [json.loads(p.content) for p in patches] == [{"maximum_annotations": 3}]
    # The look-ups paged through the task list in pages of 3.
    pages = [r.url.params["page"] for r in _calls(fake, "GET", "/api/tasks/")]
    assert pages == ["1", "1", "2", "3"]  # an empty project, then 7 tasks
    assert {r.url.params["fields"] for r in _calls(fake, "GET", "/api/tasks/")} == {"task_only"}


def test_add_items_sends_only_the_missing_tasks(fake: FakeLabelStudio) -> None:
    items = compare_items(key_prefix="camp-1:", n=5)
    with _connector(fake.transport) as connector:
        batch = connector.create_batch(SPEC, idempotency_key=KEY)
        first = connector.add_items(batch, items[:2], idempotency_key="k1").external_ids
        both = connector.add_items(batch, items, idempotency_key="k2").external_ids
        assert connector.find_tasks(batch, [i.key for i in items] + ["nope"]) == both
    imports = _calls(fake, "POST", "/api/projects/1/import")
    assert [len(json.loads(r.content)) for r in imports] == [2, 3]
    assert {k: both[k] for k in first} == first


def test_import_that_landed_behind_a_500_is_not_imported_again(fake: FakeLabelStudio) -> None:
    real = fake._import

    def processed_then_502(request: httpx.Request, pid: str) -> httpx.Response:
        real(request, pid)
        return httpx.Response(502, text="bad gateway")

    items = compare_items(key_prefix="camp-1:", n=4)
    with _connector(fake.transport) as connector:
        batch = connector.create_batch(SPEC, idempotency_key=KEY)
        fake.router.routes["import"].side_effect = processed_then_502
        ids = connector.add_items(batch, items, idempotency_key="k").external_ids
    assert len(_calls(fake, "POST", "/api/projects/1/import")) == 1
    assert len(fake.tasks) == 4 and set(ids) == {i.key for i in items}


def test_import_that_failed_before_landing_is_sent_again(fake: FakeLabelStudio) -> None:
    real = fake._import
    answers = iter([httpx.Response(504, text="timeout"), None])

    def flaky(request: httpx.Request, pid: str) -> httpx.Response:
        answer = next(answers)
        return answer if answer is not None else real(request, pid)

    sleeps: list[float] = []
    with _connector(fake.transport, sleeps=sleeps) as connector:
        batch = connector.create_batch(SPEC, idempotency_key=KEY)
        fake.router.routes["import"].side_effect = flaky
        ids = connector.add_items(
            batch, compare_items(key_prefix="camp-1:", n=3), idempotency_key="k"
        ).external_ids
    assert len(_calls(fake, "POST", "/api/projects/1/import")) == 2
    assert len(fake.tasks) == 3 and len(ids) == 3
    assert sleeps == [0.01]


def test_import_rejected_for_missing_fields_is_an_invalid_request(fake: FakeLabelStudio) -> None:
    writing = [
        TaskItem(
            key="camp-1:w-0.0",
            group="w-0",
            payload=WriteResponseTask(instruction="Answer.", prompt="Top 5 lakes"),
            overlap=1,
        )
    ]
    with _connector(fake.transport) as connector:
        batch = connector.create_batch(SPEC, idempotency_key=KEY)  # a compare project
        with pytest.raises(InvalidRequest, match="missing"):
            connector.add_items(batch, writing, idempotency_key="k")
    assert fake.tasks == {}


def test_an_import_without_task_ids_is_resolved_by_key(fake: FakeLabelStudio) -> None:
    real = fake._import

    def background_import(request: httpx.Request, pid: str) -> httpx.Response:
        real(request, pid)
        return httpx.Response(201, json={"task_count": 0})

    with _connector(fake.transport) as connector:
        batch = connector.create_batch(SPEC, idempotency_key=KEY)
        fake.router.routes["import"].side_effect = background_import
        ids = connector.add_items(
            batch, compare_items(key_prefix="camp-1:", n=2), idempotency_key="k"
        ).external_ids
    assert ids == {"camp-1:item-0.0": "1", "camp-1:item-1.0": "2"}


# --- batch control --------------------------------------------------------------------------------


def test_start_stop_and_status(fake: FakeLabelStudio) -> None:
    with _connector(fake.transport) as connector:
        batch = connector.create_batch(SPEC, idempotency_key=KEY)
        connector.add_items(
            batch, compare_items(key_prefix="camp-1:", n=3, overlap=2), idempotency_key="k"
        )
        connector.start(batch)
        fake.annotate(1, 7, _choice("left"))
        fake.annotate(2, 7, [], was_cancelled=True)
        status = connector.get_status(batch)
        assert (status.state, status.tasks) == (BatchState.OPEN, 3)
        assert (status.assignments_total, status.assignments_submitted) == (6, 2)
        connector.stop(batch, reason="done")
        assert connector.get_status(batch).state == BatchState.CLOSED
    bodies = [json.loads(r.content) for r in _calls(fake, "PATCH", "/api/projects/1/")]
    assert bodies == [{"maximum_annotations": 2}, {"is_published": True}, {"is_published": False}]


def test_unsupported_capabilities_say_so(fake: FakeLabelStudio) -> None:
    with _connector(fake.transport) as connector:
        assert connector.capabilities == {
            Capability.PAIRWISE,
            Capability.FREE_TEXT,
            Capability.RANKING,
        }
        batch = connector.create_batch(SPEC, idempotency_key=KEY)
        with pytest.raises(NotSupported, match="review"):
            connector.review(batch, [ReviewDecision(submission_id="1", accept=True)])
        with pytest.raises(NotSupported, match="block_worker"):
            connector.block_worker("7", scope=BlockScope.ACCOUNT, reason="spam")
        assert connector.spend(batch) is None
        with pytest.raises(NotSupported, match="qualify_workers"):
            connector.grant_qualification("7", "crowdloop-x-exam")
        gated = SPEC.model_copy(update={"required_qualification": "crowdloop-x-exam"})
        with pytest.raises(NotSupported, match="qualify_workers"):
            connector.create_batch(gated, idempotency_key=KEY + ":gated")
    assert len(fake.projects) == 1


# --- submissions ----------------------------------------------------------------------------------


def _started(fake: FakeLabelStudio, connector: LabelStudioConnector, n: int) -> BatchRef:
    batch = connector.create_batch(SPEC, idempotency_key=KEY)
    connector.add_items(batch, compare_items(key_prefix="camp-1:", n=n), idempotency_key="k")
    connector.start(batch)
    return batch


def test_submissions_page_in_id_order_and_resume_from_the_cursor(fake: FakeLabelStudio) -> None:
    with _connector(fake.transport, page_size=4, task_page_size=2) as connector:
        batch = _started(fake, connector, 5)
        # Annotations land on tasks in an order unlike the task list's.
        for user in (11, 12):
            for task_id in (3, 1, 5, 2, 4):
                fake.annotate(task_id, user, _choice(("left", "right", "tie")[task_id % 3]))
        pages = list(connector.iter_submissions(batch, cursor=None))
        assert [len(p.submissions) for p in pages] == [4, 4, 2]
        assert [p.has_more for p in pages] == [True, True, False]
        ids = [int(s.external_id) for p in pages for s in p.submissions]
        assert ids == list(range(1, 11))
        assert [p.cursor for p in pages] == ["4", "8", "10"]
        first = pages[0].submissions[0]
        assert first.task_key == "camp-1:item-2.0" and first.worker_id == "11"
        assert first.answer == PreferenceAnswer(choice="left")
        resumed = list(connector.iter_submissions(batch, cursor="4"))
        assert [s.external_id for p in resumed for s in p.submissions] == [
            str(i) for i in range(5, 11)
        ]
        tail = list(connector.iter_submissions(batch, cursor="10"))
        assert len(tail) == 1 and tail[0].submissions == () and tail[0].cursor == "10"
        assert not tail[0].has_more
    task_reads = [r for r in _calls(fake, "GET", "/api/tasks/") if r.url.params["fields"] == "all"]
    assert {r.url.params["project"] for r in task_reads} == {"1"}
    assert [r.url.params["page"] for r in task_reads[:3]] == ["1", "2", "3"]


def test_young_annotations_wait_so_a_late_commit_is_not_skipped(fake: FakeLabelStudio) -> None:
    with _connector(fake.transport, settle_s=5.0) as connector:
        batch = _started(fake, connector, 3)
        fake.annotate(1, 11, _choice("left"), age_s=60)
        fake.annotate(2, 11, _choice("right"), age_s=1)  # id 2: too young
        fake.annotate(3, 11, _choice("tie"), age_s=60)  # id 3: old, but after id 2
        pages = list(connector.iter_submissions(batch, cursor=None))
        assert [s.external_id for p in pages for s in p.submissions] == ["1"]
        assert pages[-1].cursor == "1"
        fake.clock.now += 10
        later = list(connector.iter_submissions(batch, cursor="1"))
        assert [s.external_id for p in later for s in p.submissions] == ["2", "3"]


def test_garbled_and_skipped_annotations_are_quarantined_with_reasons(
    fake: FakeLabelStudio,
) -> None:
    with _connector(fake.transport) as connector:
        batch = _started(fake, connector, 2)
        fake.annotate(1, 11, _choice("left"))
        fake.annotate(1, 12, _choice("maybe"))
        fake.annotate(1, 13, [], was_cancelled=True)
        fake.annotate(1, 14, _choice("left", name="other"))
        fake.annotate(2, 15, {"not": "a list"})
        fake.annotate(2, 16, [{**_choice("left")[0], "value": {"choices": ["left", "right"]}}])
        fake.annotate(2, 17, _choice("right"))
        fake.tasks[2]["annotations"].append({"id": 99, "result": [], "completed_by": 18})
        pages = list(connector.iter_submissions(batch, cursor=None))
    subs = [s for p in pages for s in p.submissions]
    bad = {q.worker_id: q for p in pages for q in p.quarantined}
    assert [(s.worker_id, s.answer) for s in subs] == [
        ("11", PreferenceAnswer(choice="left")),
        ("17", PreferenceAnswer(choice="right")),
    ]
    assert "unknown choice 'maybe'" in bad["12"].reason
    assert "skipped" in bad["13"].reason
    assert "expected one 'preference' result, found 0" in bad["14"].reason
    assert "result is not a list" in bad["15"].reason
    assert "exactly one choice" in bad["16"].reason
    unreadable = bad[None]
    assert unreadable.external_id == "task-2-annotation-99"
    assert "created_at" in unreadable.reason and unreadable.task_key == "camp-1:item-1.0"
    assert json.loads(bad["12"].raw)["result"][0]["value"] == {"choices": ["maybe"]}
    assert bad["12"].task_key == "camp-1:item-0.0" and bad["12"].external_id == "2"
    assert pages[-1].cursor == "7"


def test_writing_and_verify_answers_are_read(fake: FakeLabelStudio) -> None:
    kinds = {
        Stage.PROMPTS: WritePromptTask(instruction="Write a request.", topic="lakes"),
        Stage.RESPONSES: WriteResponseTask(instruction="Answer it.", prompt="Top 5 lakes"),
        Stage.VERIFY: VerifyTask(
            instruction="Is it fine?", target="response", prompt="Top 5 lakes", text="Baikal"
        ),
    }
    results = {
        Stage.PROMPTS: [{"from_name": "answer", "type": "textarea", "value": {"text": ["List"]}}],
        Stage.RESPONSES: [
            {
                "from_name": "answer",
                "type": "textarea",
                "value": {"text": ["1. Baikal", "2. Ontario"]},
            }
        ],
        Stage.VERIFY: _choice("reject", name="verdict"),
    }
    expected = {
        Stage.PROMPTS: TextAnswer(text="List"),
        Stage.RESPONSES: TextAnswer(text="1. Baikal\n2. Ontario"),
        Stage.VERIFY: VerdictAnswer(verdict="reject"),
    }
    with _connector(fake.transport) as connector:
        for stage, payload in kinds.items():
            spec = SPEC.model_copy(update={"stage": stage})
            batch = connector.create_batch(spec, idempotency_key=f"{KEY}:{stage.value}")
            item = TaskItem(key=f"k-{stage.value}", group="g", payload=payload, overlap=1)
            ids = connector.add_items(batch, [item], idempotency_key=stage.value).external_ids
            fake.annotate(int(ids[item.key]), 21, results[stage])
            fake.annotate(int(ids[item.key]), 22, [{**results[stage][0], "value": {"text": [" "]}}])
            pages = list(connector.iter_submissions(batch, cursor=None))
            subs = [s for p in pages for s in p.submissions]
            assert [s.answer for s in subs] == [expected[stage]], stage
            assert fake.projects[int(batch.external_id)]["label_config"] == LABEL_CONFIGS[stage]
            if stage != Stage.VERIFY:
                (q,) = [q for p in pages for q in p.quarantined]
                assert "text" in q.reason


def test_task_list_429_and_5xx_are_waited_out(fake: FakeLabelStudio) -> None:
    sleeps: list[float] = []
    with _connector(fake.transport, sleeps=sleeps) as connector:
        batch = _started(fake, connector, 2)
        fake.annotate(1, 11, _choice("left"))
        real = fake._list_tasks
        answers = iter(
            [httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(503), None]
        )

        def flaky(request: httpx.Request) -> httpx.Response:
            answer = next(answers, None)
            return answer if answer is not None else real(request)

        fake.router.routes["list_tasks"].side_effect = flaky
        subs = [s for p in connector.iter_submissions(batch, cursor=None) for s in p.submissions]
    assert len(subs) == 1
    assert sleeps == [2.0, 0.02]


def test_from_config_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROWDLOOP_LS_URL", BASE)
    monkeypatch.setenv("CROWDLOOP_LS_TOKEN", LEGACY_TOKEN)
    monkeypatch.setenv("CROWDLOOP_LS_TIMEOUT_S", "7")
    connector = LabelStudioConnector.from_config({"page_size": 50, "settle_s": 1}, None)
    with connector:
        assert connector.client.tokens is None  # legacy: a static Token header
        assert connector.client.seam.timeout_s == 7.0
        assert connector.page_size == 50 and connector.settle_s == 1.0
    monkeypatch.setenv("CROWDLOOP_LS_AUTH_SCHEME", "personal_access_token")
    with LabelStudioConnector.from_config({}, None) as forced:
        assert forced.client.tokens is not None
    monkeypatch.delenv("CROWDLOOP_LS_TOKEN")
    with pytest.raises(RuntimeError, match="CROWDLOOP_LS_TOKEN"):
        LabelStudioConnector.from_config({}, None)
