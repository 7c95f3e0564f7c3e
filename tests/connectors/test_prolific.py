"""The Prolific connector against a stateful respx fake of Prolific's API (what is sent,
what is read back, and what happens when the API misbehaves)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from crowdloop.connectors.errors import AuthError, InvalidRequest, TransientError
from crowdloop.connectors.prolific.connector import ProlificConnector
from crowdloop.connectors.prolific.credentials import ProlificCredentials
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
    Submission,
    TaskItem,
    TextAnswer,
    VerdictAnswer,
    VerifyTask,
    WritePromptTask,
    WriteResponseTask,
)
from tests.contract.harness_prolific import (
    BASE,
    PROJECT,
    TOKEN,
    WORKSPACE,
    FakeProlific,
    Json,
    answer_value_shape,
    default_answer,
    make_connector,
)

KEY = "crowdloop:camp-1:compare:batch"


def spec(stage: Stage = Stage.COMPARE, **overrides: Any) -> BatchSpec:
    values: dict[str, Any] = {
        "name": "camp-1 / compare",
        "stage": stage,
        "instruction": "Pick the better answer.",
        "reward": Money(amount=Decimal("0.12")),
        "campaign_id": "camp-1",
    }
    values.update(overrides)
    return BatchSpec(**values)


def prolific_items(n: int, *, overlap: int = 1, prefix: str = "it") -> list[TaskItem]:
    return compare_items(n, prefix=prefix, overlap=overlap, instruction="Pick the better answer.")


class Flaky(httpx.BaseTransport):
    """Wraps the fake: the first `times` matching requests get `status` (optionally after
    the fake processed them); everything else passes through."""

    def __init__(
        self,
        inner: httpx.BaseTransport,
        method: str,
        path: str,
        *,
        status: int,
        times: int = 1,
        processed: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.inner, self.method, self.path = inner, method, re.compile(path)
        self.status, self.left, self.processed = status, times, processed
        self.headers = headers or {}
        self.hits = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == self.method and self.path.search(request.url.path):
            self.hits += 1
            if self.left > 0:
                self.left -= 1
                if self.processed:
                    self.inner.handle_request(request).read()
                return httpx.Response(self.status, headers=self.headers, json={"error": "x"})
        return self.inner.handle_request(request)


@pytest.fixture
def fake() -> FakeProlific:
    return FakeProlific()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def connector(fake: FakeProlific, sleeps: list[float]) -> ProlificConnector:
    return make_connector(fake, sleeps=sleeps)


def calls(fake: FakeProlific, method: str, path: str) -> list[httpx.Request]:
    pattern = re.compile(path)
    return [
        c.request
        for c in fake.router.calls
        if c.request.method == method and pattern.search(c.request.url.path)
    ]


def body(request: httpx.Request) -> Any:
    return json.loads(request.content)


def study_of(fake: FakeProlific, batch: BatchRef) -> Json:
    found = fake.study_of(batch.external_id)
    assert found is not None, "no study for the batch"
    return found


def started(connector: ProlificConnector, items: list[TaskItem]) -> BatchRef:
    batch = connector.create_batch(spec(), idempotency_key=KEY)
    connector.add_items(batch, items, idempotency_key=f"{KEY}:tasks")
    return batch


# --- creating a batch ------------------------------------------------------------------------


def test_create_batch_sends_a_v4_dataset_and_a_layout_keyed_by_us_and_no_study_yet(
    fake: FakeProlific, connector: ProlificConnector
) -> None:
    batch = connector.create_batch(spec(), idempotency_key=KEY)

    [dataset] = calls(fake, "POST", r"/data-collection/datasets$")
    assert dataset.headers["authorization"] == f"Token {TOKEN}"
    assert dataset.headers["user-agent"].startswith("crowdloop/")
    sent = body(dataset)
    assert json.loads(sent["name"]) == {"crowdloop": KEY, "reward": 12, "qualification": None}
    assert sent["workspace_id"] == WORKSPACE
    fields = sent["schema"]["fields"]
    assert fields["crowdloop_key"] == {"type": "metadata"}
    assert fields["left"]["type"] == fields["right"]["type"] == "text"

    [aitb] = calls(fake, "POST", r"/data-collection/batches$")
    layout = body(aitb)
    assert layout["name"] == KEY
    assert batch.external_id in fake.batches
    assert layout["task_details"]["task_introduction"] == "Pick the better answer."
    rows = layout["batch_items"][0]["rows"]
    assert [item["field"] for item in rows[1]["columns"][0]["items"]] == ["left"]
    assert [item["field"] for item in rows[1]["columns"][1]["items"]] == ["right"]
    choice = rows[2]["columns"][0]["items"][0]
    assert choice["type"] == "multiple_choice" and choice["answer_limit"] == 1
    assert [o["value"] for o in choice["options"]] == ["left", "right", "tie"]
    # The guide's order: the study comes once the batch is READY, i.e. with the first items.
    assert calls(fake, "POST", r"^/api/v1/studies/$") == []


def test_the_study_is_created_once_the_batch_is_ready_in_the_workspace_project(
    fake: FakeProlific, connector: ProlificConnector
) -> None:
    batch = connector.create_batch(spec(), idempotency_key=KEY)
    connector.add_items(batch, prolific_items(2), idempotency_key="k")
    order = [
        (c.request.method, c.request.url.path)
        for c in fake.router.calls
        if c.request.method == "POST" or "upload-url" in c.request.url.path
    ]
    steps = [
        next(i for i, (m, p) in enumerate(order) if pattern.search(f"{m} {p}"))
        for pattern in (
            re.compile(r"POST .*/datasets$"),
            re.compile(r"GET .*/upload-url/"),
            re.compile(r"POST .*/batches/[^/]+/setup$"),
            re.compile(r"POST /api/v1/studies/$"),
            re.compile(r"POST /api/v1/studies/[^/]+/transition/$"),
        )
    ]
    assert steps == sorted(steps), order
    [study] = calls(fake, "POST", r"^/api/v1/studies/$")
    sent = body(study)
    assert sent["internal_name"] == KEY and sent["project"] == PROJECT
    assert sent["data_collection_method"] == "AI_TASK_BUILDER_BATCH"
    assert sent["data_collection_id"] == batch.external_id
    assert sent["data_collection_metadata"] == {"annotators_per_task": 1}
    assert sent["reward"] == 12  # minor units
    assert sent["completion_codes"][0]["actions"] == [{"action": "MANUALLY_REVIEW"}]
    [blocklist] = sent["filters"]
    assert blocklist["filter_id"] == "participant_group_blocklist"
    names = {fake.groups[g]["name"] for g in blocklist["selected_values"]}
    assert names == {"crowdloop blocklist", f"crowdloop exclusions {KEY}"}
    assert study_of(fake, batch)["_billed_to"] == f"project {PROJECT}"
    assert study_of(fake, batch)["status"] == "ACTIVE"


def test_a_project_is_required_so_studies_bill_the_workspace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CROWDLOOP_PROLIFIC_TOKEN", "env-token")
    monkeypatch.delenv("CROWDLOOP_PROLIFIC_PROJECT_ID", raising=False)
    with pytest.raises(ValueError, match=r"project_id.*personal balance"):
        ProlificConnector.from_config({"workspace_id": WORKSPACE}, None)
    monkeypatch.setenv("CROWDLOOP_PROLIFIC_PROJECT_ID", PROJECT)
    connector = ProlificConnector.from_config({"workspace_id": WORKSPACE}, None)
    assert connector.project_id == PROJECT
    connector.close()


def test_create_batch_replayed_or_found_from_a_fresh_connector_creates_nothing(
    fake: FakeProlific, connector: ProlificConnector
) -> None:
    batch = connector.create_batch(spec(), idempotency_key=KEY)
    posts = len([c for c in fake.router.calls if c.request.method == "POST"])
    assert connector.create_batch(spec(), idempotency_key=KEY) == batch
    fresh = make_connector(fake)
    assert fresh.create_batch(spec(), idempotency_key=KEY) == batch
    assert fresh.find_batch(KEY) == batch
    assert fresh.find_batch("crowdloop:other") is None
    assert len([c for c in fake.router.calls if c.request.method == "POST"]) == posts
    # The batch list is read at the CLI's path, with the trailing slash (the fake answers
    # the bare path with a redirect, which httpx does not follow).
    listed = calls(fake, "GET", r"/data-collection/batches/?$")
    assert listed and all(r.url.path.endswith("/batches/") for r in listed)
    assert listed[0].url.params["workspace_id"] == WORKSPACE


def test_a_study_created_behind_a_500_is_found_not_created_again(
    fake: FakeProlific, sleeps: list[float]
) -> None:
    flaky = Flaky(fake.transport(), "POST", r"^/api/v1/studies/$", status=502, processed=True)
    connector = make_connector(fake, wrap=lambda _t: flaky, sleeps=sleeps)
    batch = connector.create_batch(spec(), idempotency_key=KEY)
    connector.add_items(batch, prolific_items(1), idempotency_key="k")
    assert len(fake.studies) == 1 and study_of(fake, batch)["internal_name"] == KEY
    assert flaky.hits == 1, "the create was re-sent although the study existed"
    assert sleeps, "no pause before looking the study up"


def test_a_batch_created_behind_a_500_is_found_not_created_again(
    fake: FakeProlific, sleeps: list[float]
) -> None:
    flaky = Flaky(
        fake.transport(), "POST", r"/data-collection/batches$", status=502, processed=True
    )
    connector = make_connector(fake, wrap=lambda _t: flaky, sleeps=sleeps)
    batch = connector.create_batch(spec(), idempotency_key=KEY)
    assert list(fake.batches) == [batch.external_id]
    assert flaky.hits == 1


def test_a_429_on_create_waits_retry_after_then_creates_once(
    fake: FakeProlific, sleeps: list[float]
) -> None:
    flaky = Flaky(
        fake.transport(),
        "POST",
        r"/data-collection/batches$",
        status=429,
        headers={"Retry-After": "7"},
    )
    connector = make_connector(fake, wrap=lambda _t: flaky, sleeps=sleeps)
    connector.create_batch(spec(), idempotency_key=KEY)
    assert 7 in sleeps
    assert flaky.hits == 2 and len(fake.batches) == 1


def test_a_create_that_keeps_failing_gives_up_without_duplicates(
    fake: FakeProlific, sleeps: list[float]
) -> None:
    flaky = Flaky(fake.transport(), "POST", r"/data-collection/batches$", status=503, times=99)
    connector = make_connector(fake, wrap=lambda _t: flaky, sleeps=sleeps, create_attempts=3)
    with pytest.raises(TransientError):
        connector.create_batch(spec(), idempotency_key=KEY)
    assert flaky.hits == 3, "a non-idempotent create went through the transport retries"
    assert fake.batches == {}


def test_a_bad_token_is_an_auth_error_naming_the_connector_without_the_token(
    fake: FakeProlific, sleeps: list[float]
) -> None:
    credentials = ProlificCredentials(api_token=SecretStr("wrong-token-123"), base_url=BASE)
    client = credentials.get_client(transport=fake.transport(), sleep=sleeps.append)
    connector = ProlificConnector(client, workspace_id=WORKSPACE, project_id=PROJECT)
    with pytest.raises(AuthError, match=r"\[prolific\]") as raised:
        connector.create_batch(spec(), idempotency_key=KEY)
    assert "wrong-token-123" not in str(raised.value)
    assert sleeps == [] and len(fake.router.calls) == 1


def test_a_reward_in_another_currency_is_refused(connector: ProlificConnector) -> None:
    with pytest.raises(InvalidRequest, match="EUR"):
        connector.create_batch(
            spec(reward=Money(amount=Decimal("1"), currency="EUR")), idempotency_key=KEY
        )


# --- pushing items ------------------------------------------------------------------------


def test_the_first_push_uploads_one_jsonl_record_per_answer_then_sets_up_and_publishes(
    fake: FakeProlific, connector: ProlificConnector, sleeps: list[float]
) -> None:
    items = prolific_items(3, overlap=2)
    batch = connector.create_batch(spec(), idempotency_key=KEY)
    result = connector.add_items(batch, items, idempotency_key=f"{KEY}:tasks")

    assert calls(fake, "POST", r"/datapoints$") == []  # appends make no import job
    [put] = fake.s3_puts
    assert "authorization" not in put.headers  # the token never goes to the upload host
    assert put.headers["content-type"] == "application/x-ndjson"
    records = [json.loads(line) for line in put.content.decode().splitlines()]
    assert len(records) == 6  # 3 items x overlap 2
    assert {(r["crowdloop_key"], r["crowdloop_replica"]) for r in records} == {
        (i.key, str(n)) for i in items for n in range(2)
    }
    assert records[0]["crowdloop_kind"] == "compare" and records[0]["left"].startswith("Nile")
    [dataset] = fake.datasets.values()
    assert [job["status"] for job in dataset["imports"]] == ["complete"]
    [setup] = calls(fake, "POST", r"/setup$")
    assert body(setup) == {"dataset_id": dataset["id"], "tasks_per_group": 1}
    assert 0.25 in sleeps, "the import and the setup are asynchronous: not polled"
    study = study_of(fake, batch)
    assert study["total_available_places"] == 6
    assert study["status"] == "ACTIVE"
    assert set(result.external_ids) == {i.key for i in items}


def test_an_import_that_rejects_records_fails_the_push_with_details(
    fake: FakeProlific, connector: ProlificConnector
) -> None:
    batch = connector.create_batch(spec(), idempotency_key=KEY)
    [dataset] = fake.datasets.values()
    del dataset["schema"]["fields"]["right"]  # the platform no longer knows a field we send
    with pytest.raises(InvalidRequest, match=r"ended failed.*unknown fields"):
        connector.add_items(batch, prolific_items(2), idempotency_key="k")
    assert fake.studies == {}


def test_a_second_push_syncs_the_new_datapoints_and_grows_the_places(
    fake: FakeProlific, connector: ProlificConnector
) -> None:
    batch = started(connector, prolific_items(2))
    connector.add_items(batch, prolific_items(3, prefix="more"), idempotency_key=f"{KEY}:2")
    assert len(calls(fake, "POST", r"/sync$")) == 1
    assert len(calls(fake, "GET", r"/syncs/[^/]+$")) == 1
    assert len(fake.s3_puts) == 1  # later pushes append
    assert len(calls(fake, "POST", r"/datapoints$")) == 1
    assert study_of(fake, batch)["total_available_places"] == 5
    assert [c for c in calls(fake, "PATCH", r"^/api/v1/studies/")]


def test_a_sync_that_comes_back_complete_without_a_sync_id_is_done(
    fake: FakeProlific, connector: ProlificConnector
) -> None:
    batch = started(connector, prolific_items(2))
    fake.sync_done_at_once = True
    connector.add_items(batch, prolific_items(1, prefix="more"), idempotency_key=f"{KEY}:2")
    assert calls(fake, "GET", r"/syncs/") == []
    assert study_of(fake, batch)["total_available_places"] == 3


def test_replaying_add_items_creates_nothing_and_returns_the_same_ids(
    fake: FakeProlific, connector: ProlificConnector
) -> None:
    items = prolific_items(4)
    batch = connector.create_batch(spec(), idempotency_key=KEY)
    first = connector.add_items(batch, items, idempotency_key="k").external_ids
    tasks = fake.task_keys()
    again = make_connector(fake).add_items(batch, items, idempotency_key="k").external_ids
    assert again == first and fake.task_keys() == tasks
    assert len(fake.studies) == 1
    assert study_of(fake, batch)["total_available_places"] == 4


def test_a_500_after_an_append_is_retried_and_writes_each_record_once(
    fake: FakeProlific, sleeps: list[float]
) -> None:
    flaky = Flaky(fake.transport(), "POST", r"/datapoints$", status=500, processed=True)
    connector = make_connector(fake, wrap=lambda _t: flaky, sleeps=sleeps)
    batch = connector.create_batch(spec(), idempotency_key=KEY)
    connector.add_items(batch, prolific_items(1), idempotency_key="k0")  # the upload
    connector.add_items(batch, prolific_items(3), idempotency_key="k")  # appends
    assert flaky.hits == 2
    [dataset] = fake.datasets.values()
    assert len(dataset["records"]) == 3


def test_large_pushes_are_split_into_appends_of_at_most_1000_records(
    fake: FakeProlific, connector: ProlificConnector
) -> None:
    batch = connector.create_batch(spec(), idempotency_key=KEY)
    connector.add_items(batch, prolific_items(450, overlap=3), idempotency_key="k")
    [upload] = fake.s3_puts  # the first load is one file, no per-request limit
    assert len(upload.content.decode().splitlines()) == 1350
    connector.add_items(batch, prolific_items(450, overlap=3, prefix="m"), idempotency_key="m")
    sizes = [len(r.content.decode().splitlines()) for r in calls(fake, "POST", r"/datapoints$")]
    assert sizes == [1000, 350]


def test_records_prolific_rejects_fail_the_push_with_details(
    fake: FakeProlific, connector: ProlificConnector
) -> None:
    batch = connector.create_batch(spec(), idempotency_key=KEY)
    connector.add_items(batch, prolific_items(1), idempotency_key="k0")
    [dataset] = fake.datasets.values()
    del dataset["schema"]["fields"]["right"]  # the platform no longer knows a field we send
    with pytest.raises(InvalidRequest, match="rejected 2 datapoint"):
        connector.add_items(batch, prolific_items(2, prefix="m"), idempotency_key="k")


def test_excluded_workers_join_the_batch_exclusion_group_and_get_no_task(
    fake: FakeProlific, connector: ProlificConnector
) -> None:
    author = "5f0000000000000000000aaa"
    batch = connector.create_batch(spec(Stage.VERIFY), idempotency_key=KEY)
    item = TaskItem(
        key="v-1.0",
        group="v-1",
        payload=VerifyTask(instruction="Check it.", target="response", prompt="p", text="t"),
        overlap=3,
        exclude_workers=(author,),
    )
    connector.add_items(batch, [item], idempotency_key="k")
    group = next(g for g in fake.groups.values() if g["name"] == f"crowdloop exclusions {KEY}")
    assert group["participants"] == [author]
    fake.work(batch.external_id, participants=[author, "5f0000000000000000000bbb"])
    assert {s["participant_id"] for s in fake.submissions.values()} == {"5f0000000000000000000bbb"}


def test_find_tasks_confirms_only_keys_prolific_can_show(
    fake: FakeProlific, connector: ProlificConnector
) -> None:
    items = prolific_items(2)
    batch = started(connector, items)
    fresh = make_connector(fake)
    assert fresh.find_tasks(batch, [i.key for i in items]) == {}  # no read-back of datapoints
    fake.work(batch.external_id)
    found = fresh.find_tasks(batch, [i.key for i in items] + ["never.0"])
    assert found == {i.key: f"{batch.external_id}:{i.key}" for i in items}


# --- reading results -----------------------------------------------------------------------


def test_answers_map_to_preference_verdict_and_text(fake: FakeProlific) -> None:
    kinds = {
        Stage.COMPARE: prolific_items(1)[0],
        Stage.VERIFY: TaskItem(
            key="v.0",
            group="v",
            payload=VerifyTask(instruction="i", target="prompt", prompt="p", text="t"),
            overlap=1,
        ),
        Stage.PROMPTS: TaskItem(
            key="wp.0", group="wp", payload=WritePromptTask(instruction="i", topic="t"), overlap=1
        ),
        Stage.RESPONSES: TaskItem(
            key="wr.0",
            group="wr",
            payload=WriteResponseTask(instruction="i", prompt="p"),
            overlap=1,
        ),
    }
    got: dict[Stage, Submission] = {}
    for stage, item in kinds.items():
        connector = make_connector(fake)
        batch = connector.create_batch(spec(stage), idempotency_key=f"k-{stage.value}")
        connector.add_items(batch, [item], idempotency_key="t")
        fake.work(batch.external_id)
        [page] = list(connector.iter_submissions(batch, cursor=None))
        assert page.quarantined == ()
        [got[stage]] = page.submissions
    assert got[Stage.COMPARE].answer == PreferenceAnswer(choice="left")
    assert got[Stage.VERIFY].answer == VerdictAnswer(verdict="accept")
    assert isinstance(got[Stage.PROMPTS].answer, TextAnswer)
    assert isinstance(got[Stage.RESPONSES].answer, TextAnswer)
    assert got[Stage.COMPARE].task_key == "it-0.0"
    sub = next(iter(fake.submissions.values()))
    assert got[Stage.COMPARE].worker_id == sub["participant_id"]
    layouts = {body(r)["name"]: body(r)["batch_items"] for r in calls(fake, "POST", r"/batches$")}
    free = layouts["k-responses"][0]["rows"][1]["columns"][0]["items"][0]
    assert free["type"] == "free_text"


@pytest.mark.parametrize(
    "answerer", [default_answer, answer_value_shape], ids=["text", "answer-value"]
)
def test_a_written_answer_is_read_from_text_or_from_the_first_answer_value(
    fake: FakeProlific, answerer: Callable[[Json], Json]
) -> None:
    connector = make_connector(fake)
    batch = connector.create_batch(spec(Stage.RESPONSES), idempotency_key=KEY)
    item = TaskItem(
        key="wr.0", group="wr", payload=WriteResponseTask(instruction="i", prompt="p"), overlap=1
    )
    connector.add_items(batch, [item], idempotency_key="k")
    fake.work(batch.external_id, answer=answerer)
    [page] = list(connector.iter_submissions(batch, cursor=None))
    assert page.quarantined == ()
    [sub] = page.submissions
    assert sub.answer == TextAnswer(text="A careful answer for wr.0")


def test_submissions_page_by_offset_and_the_cursor_waits_for_running_ones(
    fake: FakeProlific, sleeps: list[float]
) -> None:
    connector = make_connector(fake, sleeps=sleeps, page_limit=3)
    batch = started(connector, prolific_items(4))
    fake.work(batch.external_id)
    running = started_more(fake, connector, batch, status="ACTIVE")  # position 4
    tail = started_more(fake, connector, batch, prefix="tail")  # position 5

    pages = list(connector.iter_submissions(batch, cursor=None))
    assert [p.has_more for p in pages] == [True, False]
    assert [len(p.submissions) for p in pages] == [3, 2]  # the running one is not read
    assert pages[0].cursor == "3" and pages[-1].cursor == "4"  # held at the running one
    listed = calls(fake, "GET", r"/submissions/$")
    assert dict(listed[0].url.params) == {"ordering": "started_at", "offset": "0", "limit": "3"}

    fake.submissions[running]["status"] = "AWAITING REVIEW"
    again = [s for p in connector.iter_submissions(batch, cursor="4") for s in p.submissions]
    assert {s.external_id.split(":")[0] for s in again} == {running, tail}


def started_more(
    fake: FakeProlific,
    connector: ProlificConnector,
    batch: BatchRef,
    *,
    status: str = "AWAITING REVIEW",
    prefix: str = "run",
) -> str:
    connector.add_items(batch, prolific_items(1, prefix=prefix), idempotency_key=prefix)
    before = set(fake.submissions)
    fake.work(batch.external_id, status=status)
    [new] = set(fake.submissions) - before
    return new


def test_returned_and_timed_out_submissions_yield_nothing(
    fake: FakeProlific, connector: ProlificConnector
) -> None:
    batch = started(connector, prolific_items(2))
    fake.work(batch.external_id)
    for sub in fake.submissions.values():
        sub["status"] = "RETURNED"
    [page] = list(connector.iter_submissions(batch, cursor=None))
    assert page.submissions == () and page.quarantined == () and page.cursor == "2"


@pytest.mark.parametrize(
    ("garble", "reason"),
    [
        (lambda r: r["response"].update(answer=[{"value": "both"}]), "option 'both'"),
        (lambda r: r["response"].update(answer=[]), "one option picked, got 0"),
        (lambda r: r["response"].update(type="free_text"), "got a 'free_text' response"),
        (lambda r: r["metadata"].pop("crowdloop_key"), "no crowdloop_key"),
        (lambda r: r["metadata"].update(crowdloop_kind="sort"), "unknown task kind"),
        (lambda r: r.pop("participant_id"), "unreadable response: participant_id"),
        (lambda r: r.update(participant_id="someone-else"), "is not the submission's"),
    ],
)
def test_a_garbled_response_is_quarantined_with_reason_and_raw(
    fake: FakeProlific,
    connector: ProlificConnector,
    garble: Callable[[Json], Any],
    reason: str,
) -> None:
    batch = started(connector, prolific_items(2))
    fake.work(batch.external_id)
    garble(fake.responses[0])
    [page] = list(connector.iter_submissions(batch, cursor=None))
    assert len(page.submissions) == 1
    [bad] = page.quarantined
    assert reason in bad.reason
    assert bad.external_id.endswith(fake.responses[0]["id"])
    assert json.loads(bad.raw)["id"] == fake.responses[0]["id"]


def test_an_empty_text_answer_and_a_submission_without_responses_are_quarantined(
    fake: FakeProlific,
) -> None:
    connector = make_connector(fake)
    batch = connector.create_batch(spec(Stage.PROMPTS), idempotency_key=KEY)
    items = [
        TaskItem(
            key=f"w{i}.0",
            group=f"w{i}",
            payload=WritePromptTask(instruction="i", topic="t"),
            overlap=1,
        )
        for i in range(2)
    ]
    connector.add_items(batch, items, idempotency_key="k")
    fake.work(batch.external_id, answer=lambda r: {"type": "free_text", "text": "   "})
    orphan = fake.responses.pop()  # Prolific lists the submission but has no response
    [page] = list(connector.iter_submissions(batch, cursor=None))
    reasons = sorted(q.reason for q in page.quarantined)
    assert page.submissions == ()
    assert "free-text response carries no text" in reasons[0]
    assert "no task responses" in reasons[1]
    assert {q.external_id for q in page.quarantined} >= {f"{orphan['submission_id']}:none"}
    assert len(calls(fake, "GET", r"/responses$")) == 2, "responses were not re-read once"


def test_listing_submissions_waits_out_a_429_and_retries_a_503(
    fake: FakeProlific, sleeps: list[float]
) -> None:
    inner = fake.transport()
    first = Flaky(inner, "GET", r"/submissions/$", status=429, headers={"Retry-After": "4"})
    second = Flaky(first, "GET", r"/submissions/$", status=503)
    connector = make_connector(fake, wrap=lambda _t: second, sleeps=sleeps)
    batch = started(connector, prolific_items(2))
    fake.work(batch.external_id)
    read = [s for p in connector.iter_submissions(batch, cursor=None) for s in p.submissions]
    assert len(read) == 2
    assert 4 in sleeps and second.hits >= 2


# --- money and workers ---------------------------------------------------------------------


def test_review_bulk_approves_rejects_with_a_long_message_and_repeats_are_no_ops(
    fake: FakeProlific, connector: ProlificConnector
) -> None:
    batch = started(connector, prolific_items(3))
    fake.work(batch.external_id)
    read = [s for p in connector.iter_submissions(batch, cursor=None) for s in p.submissions]
    decisions = [
        ReviewDecision(submission_id=read[0].external_id, accept=True),
        ReviewDecision(submission_id=read[1].external_id, accept=True),
        ReviewDecision(submission_id=read[2].external_id, accept=False, comment="Failed gold."),
    ]
    connector.review(batch, decisions)
    [bulk] = calls(fake, "POST", r"/submissions/bulk-approve/$")
    ids = [s.external_id.split(":")[0] for s in read]
    assert body(bulk) == {"study_id": study_of(fake, batch)["id"], "submission_ids": ids[:2]}
    [reject] = calls(fake, "POST", r"/submissions/[^/]+/transition/$")
    sent = body(reject)
    assert sent["action"] == "REJECT" and sent["rejection_category"] == "LOW_EFFORT"
    assert sent["message"].startswith("Failed gold.") and len(sent["message"]) >= 100
    assert [fake.submissions[i]["status"] for i in ids] == ["APPROVED", "APPROVED", "REJECTED"]

    posts = len(calls(fake, "POST", r"/submissions/"))
    connector.review(batch, decisions)
    # Contrary to a final status: logged and skipped, never sent.
    connector.review(batch, [ReviewDecision(submission_id=read[0].external_id, accept=False)])
    assert len(calls(fake, "POST", r"/submissions/")) == posts


def test_block_worker_adds_to_one_workspace_group_that_studies_blocklist(
    fake: FakeProlific, connector: ProlificConnector
) -> None:
    worker = "5f00000000000000000000cc"
    connector.block_worker(worker, scope=BlockScope.CAMPAIGN, reason="failed gold")
    make_connector(fake).block_worker(worker, scope=BlockScope.ACCOUNT, reason="again")
    [group] = [g for g in fake.groups.values() if g["name"] == "crowdloop blocklist"]
    assert group["participants"] == [worker]
    assert len(calls(fake, "POST", r"^/api/v1/participant-groups/$")) == 1
    batch = connector.create_batch(spec(), idempotency_key=KEY)
    connector.add_items(batch, prolific_items(1), idempotency_key="k")
    filters = study_of(fake, batch)["filters"]
    assert group["id"] in filters[0]["selected_values"]
    [added, _again] = calls(fake, "POST", r"/participants/$")
    assert body(added) == {"participant_ids": [worker]}


def test_qualifications_are_participant_groups_on_an_allowlist(
    fake: FakeProlific, connector: ProlificConnector
) -> None:
    assert Capability.QUALIFY_WORKERS in connector.capabilities
    connector.ensure_qualification("camp-1-exam")
    connector.grant_qualification("5f00000000000000000000dd", "camp-1-exam")
    connector.grant_qualification("5f00000000000000000000dd", "camp-1-exam")
    [group] = [g for g in fake.groups.values() if g["name"].startswith("crowdloop qualification")]
    assert group["participants"] == ["5f00000000000000000000dd"]
    batch = connector.create_batch(spec(required_qualification="camp-1-exam"), idempotency_key=KEY)
    connector.add_items(batch, prolific_items(1), idempotency_key="k")
    filters = study_of(fake, batch)["filters"]
    assert {"filter_id": "participant_group_allowlist", "selected_values": [group["id"]]} in filters


def test_start_waits_for_tasks_stop_stops_once_and_status_counts_answers(
    fake: FakeProlific, connector: ProlificConnector
) -> None:
    batch = connector.create_batch(spec(), idempotency_key=KEY)
    connector.start(batch)  # crowdloop starts before it pushes: nothing to publish yet
    assert fake.studies == {}
    assert connector.get_status(batch).state is BatchState.CLOSED
    connector.add_items(batch, prolific_items(2, overlap=2), idempotency_key="k")
    connector.start(batch)
    status = connector.get_status(batch)
    assert status.state is BatchState.OPEN and status.tasks == 4 and not status.complete
    fake.work(batch.external_id)
    assert connector.get_status(batch).complete
    connector.stop(batch, reason="done")
    connector.stop(batch, reason="done")
    transitions = [body(r)["action"] for r in calls(fake, "POST", r"/studies/[^/]+/transition/$")]
    assert transitions == ["PUBLISH", "STOP"]
    assert connector.get_status(batch).state is BatchState.CLOSED


def test_spend_is_not_reported(connector: ProlificConnector, fake: FakeProlific) -> None:
    batch = connector.create_batch(spec(), idempotency_key=KEY)
    assert Capability.SPEND_REPORT not in connector.capabilities
    assert connector.spend(batch) is None


# --- configuration -------------------------------------------------------------------------


def test_from_config_reads_the_environment_and_needs_a_workspace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CROWDLOOP_PROLIFIC_TOKEN", "env-token")
    monkeypatch.delenv("CROWDLOOP_PROLIFIC_WORKSPACE_ID", raising=False)
    monkeypatch.delenv("CROWDLOOP_PROLIFIC_URL", raising=False)
    monkeypatch.delenv("CROWDLOOP_PROLIFIC_PROJECT_ID", raising=False)
    with pytest.raises(ValueError, match="workspace_id"):
        ProlificConnector.from_config({}, None)
    connector = ProlificConnector.from_config(
        {
            "workspace_id": "ws-9",
            "project_id": "pr-1",
            "page_limit": 50,
            "currency": "gbp",
            "tasks_per_group": 2,
        },
        None,
    )
    seam = connector.client.seam
    assert seam.base_url == "https://api.prolific.com"
    assert seam.auth_headers == {"Authorization": "Token env-token"}
    assert connector.workspace_id == "ws-9" and connector.page_limit == 50
    assert connector.currency == "GBP" and connector.tasks_per_group == 2
    connector.close()
    monkeypatch.delenv("CROWDLOOP_PROLIFIC_TOKEN")
    with pytest.raises(RuntimeError, match="CROWDLOOP_PROLIFIC_TOKEN"):
        ProlificConnector.from_config({"workspace_id": "ws-9", "project_id": "pr-1"}, None)


def test_from_config_loads_a_named_block(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[str] = []

    def load(name: str) -> ProlificCredentials:
        loaded.append(name)
        return ProlificCredentials(api_token=SecretStr("blk"), base_url=BASE, timeout_s=9)

    monkeypatch.setattr(ProlificCredentials, "load", staticmethod(load))
    connector = ProlificConnector.from_config(
        {"workspace_id": WORKSPACE, "project_id": PROJECT}, "prolific-creds"
    )
    assert loaded == ["prolific-creds"]
    assert connector.client.seam.base_url == BASE and connector.client.seam.timeout_s == 9
    connector.close()


def test_default_answers_cover_every_kind() -> None:
    assert default_answer({"crowdloop_kind": "verify"})["answer"] == [{"value": "accept"}]


def test_task_groups_pay_per_submission_and_take_one_place_per_group(
    fake: FakeProlific,
) -> None:
    connector = make_connector(fake, tasks_per_group=2)
    batch = connector.create_batch(spec(), idempotency_key=KEY)
    connector.add_items(batch, prolific_items(2, overlap=2), idempotency_key="k")
    study = study_of(fake, batch)
    assert study["reward"] == 24  # 2 tasks of 0.12 USD per submission
    assert study["total_available_places"] == 2  # 4 tasks in groups of 2
    [setup] = calls(fake, "POST", r"/setup$")
    assert body(setup)["tasks_per_group"] == 2
