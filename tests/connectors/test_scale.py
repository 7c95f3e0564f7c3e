"""The Scale AI connector against a stateful fake of Scale's v1 API (respx router).

Asserts what goes over the wire (paths, query parameters, bodies, the Basic auth header),
how answers map back to the domain, and the failure paths: 409 reconciliation, paging
over several windows and pages, 429 / 5xx retries, auth errors, garbled answers.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from crowdloop.connectors._http import RetryPolicy
from crowdloop.connectors.errors import AlreadyExists, AuthError, InvalidRequest, NotSupported
from crowdloop.connectors.scale.connector import (
    COMPARE_CHOICES,
    MAX_UNIQUE_ID,
    ScaleConnector,
    ScaleOptions,
)
from crowdloop.connectors.scale.credentials import ScaleCredentials
from crowdloop.connectors.testing import compare_items
from crowdloop.models.domain import (
    BatchRef,
    BatchSpec,
    BatchState,
    BlockScope,
    Money,
    PreferenceAnswer,
    Quarantined,
    ReviewDecision,
    Stage,
    Submission,
    SubmissionPage,
    TaskItem,
    TextAnswer,
    VerdictAnswer,
    VerifyTask,
    WritePromptTask,
    WriteResponseTask,
)
from tests.contract.harness_scale import API_KEY, BASE, FakeScale

KEY = "crowdloop:camp-1:compare:batch"
WRITE_KEY = "crowdloop:camp-1:responses:batch"


class Recorder(httpx.BaseTransport):
    """Passes requests to the fake and keeps them; `script` answers some of them first."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.requests: list[httpx.Request] = []
        self.script: list[tuple[str, str, httpx.Response]] = []  # (method, path regex, answer)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        for index, (method, path, answer) in enumerate(self.script):
            if request.method == method and re.search(path, request.url.path):
                del self.script[index]
                return answer
        return self.inner.handle_request(request)

    def sent(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and re.search(path, r.url.path)]

    def bodies(self, method: str, path: str) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.sent(method, path)]


@pytest.fixture
def fake() -> FakeScale:
    return FakeScale()


@pytest.fixture
def waits() -> list[float]:
    return []


Make = Callable[..., tuple[ScaleConnector, Recorder]]


@pytest.fixture
def make(fake: FakeScale, waits: list[float]) -> Iterator[Make]:
    made: list[ScaleConnector] = []

    def build(
        *, api_key: str = API_KEY, clock: Callable[[], datetime] | None = None, **options: Any
    ) -> tuple[ScaleConnector, Recorder]:
        recorder = Recorder(fake.transport())
        client = ScaleCredentials(api_key=SecretStr(api_key)).get_client(
            retry=RetryPolicy(attempts=4), transport=recorder, sleep=waits.append
        )
        settings: dict[str, Any] = {
            "project": "rlhf-compare",
            "textcollection_project": "rlhf-text",
            "create_projects": True,
            "page_limit": 3,
            "settle_s": 0.0,
            **options,
        }
        # The reader shares the fake server's clock (settle_s is 0 here): work finished
        # before a read is inside the read's window, work finished after it is not.
        connector = ScaleConnector(client, ScaleOptions(**settings), clock=clock or fake.clock)
        made.append(connector)
        return connector, recorder

    yield build
    for connector in made:
        connector.close()


def spec(stage: Stage = Stage.COMPARE, **overrides: Any) -> BatchSpec:
    return BatchSpec(
        name=f"camp-1 / {stage.value}",
        stage=stage,
        instruction="Which answer is better?",
        reward=Money(amount=Decimal("0.05")),
        campaign_id="camp-1",
        **overrides,
    )


def latest_completion(fake: FakeScale) -> datetime:
    return max(
        datetime.fromisoformat(t["completed_at"])
        for t in fake.tasks.values()
        if t.get("completed_at")
    )


def read_all(
    connector: ScaleConnector, batch: BatchRef, cursor: str | None
) -> list[SubmissionPage]:
    return list(connector.iter_submissions(batch, cursor=cursor))


def subs(pages: list[SubmissionPage]) -> list[Submission]:
    return [s for p in pages for s in p.submissions]


def quarantined(pages: list[SubmissionPage]) -> list[Quarantined]:
    return [q for p in pages for q in p.quarantined]


# --- batches ---------------------------------------------------------------------------------


def test_create_batch_sends_project_name_and_metadata_with_basic_auth(make: Make) -> None:
    connector, rec = make(compare_task_type="comparison")  # the legacy endpoint, opt-in
    ref = connector.create_batch(spec(), idempotency_key=KEY)
    name = connector.batch_name(KEY)
    assert ref == BatchRef(connector="scale", external_id=name)
    assert re.fullmatch(r"crowdloop_camp-1_compare_batch-[0-9a-f]{12}", name)
    assert rec.bodies("POST", r"^/v1/projects$") == [
        {"type": "comparison", "name": "rlhf-compare", "params": {}}
    ]
    assert rec.bodies("POST", r"^/v1/batches$") == [
        {
            "project": "rlhf-compare",
            "name": name,
            "metadata": {
                "crowdloop_key": KEY,
                "crowdloop_campaign": "camp-1",
                "crowdloop_stage": "compare",
                "crowdloop_title": "camp-1 / compare",
                "crowdloop_reward": "0.05 USD",
            },
        }
    ]
    token = base64.b64encode(f"{API_KEY}:".encode()).decode()
    for request in rec.requests:
        assert request.headers["authorization"] == f"Basic {token}"
        assert request.headers["user-agent"].startswith("crowdloop/")


def test_replayed_create_batch_resolves_the_409_to_the_same_batch(
    make: Make, fake: FakeScale
) -> None:
    connector, rec = make()
    first = connector.create_batch(spec(), idempotency_key=KEY)
    second = connector.create_batch(spec(), idempotency_key=KEY)
    assert first == second
    assert len(fake.batches) == 1
    assert len(rec.sent("POST", r"^/v1/batches$")) == 2
    assert [r.url.path for r in rec.sent("GET", r"^/v1/batches/")] == [
        f"/v1/batches/{first.external_id}"
    ]
    fresh, _ = make()
    assert fresh.find_batch(KEY) == first
    assert fresh.find_batch("crowdloop:camp-1:never:batch") is None


def test_writing_batches_go_to_the_textcollection_project(make: Make, fake: FakeScale) -> None:
    connector, rec = make(callback_url="https://hooks.example.com/scale")
    ref = connector.create_batch(spec(Stage.RESPONSES), idempotency_key=WRITE_KEY)
    assert fake.batches[ref.external_id]["project"] == "rlhf-text"
    assert rec.bodies("POST", r"^/v1/projects$")[0]["type"] == "textcollection"
    assert rec.bodies("POST", r"^/v1/batches$")[0]["callback"] == "https://hooks.example.com/scale"


def test_a_batch_name_taken_by_another_key_is_refused(make: Make, fake: FakeScale) -> None:
    connector, _ = make()
    name = connector.batch_name(KEY)
    fake.projects["rlhf-compare"] = {"name": "rlhf-compare", "type": "comparison", "params": {}}
    fake.batches[name] = {
        "project": "rlhf-compare",
        "name": name,
        "status": "staging",
        "metadata": {"crowdloop_key": "someone-else"},
    }
    with pytest.raises(AlreadyExists, match="someone-else"):
        connector.create_batch(spec(), idempotency_key=KEY)
    assert connector.find_batch(KEY) is None


def test_qualification_gated_batches_are_refused(make: Make) -> None:
    connector, rec = make()
    with pytest.raises(NotSupported, match="qualify_workers"):
        connector.create_batch(spec(required_qualification="exam-pass"), idempotency_key=KEY)
    assert rec.requests == []


def test_start_finalizes_a_staging_batch_once(make: Make, fake: FakeScale) -> None:
    connector, rec = make()
    batch = connector.create_batch(spec(), idempotency_key=KEY)
    connector.start(batch)
    connector.start(batch)
    assert len(rec.sent("POST", r"/finalize$")) == 1
    assert fake.batches[batch.external_id]["status"] == "in_progress"


def test_rapid_batches_refuse_tasks_after_finalize(make: Make) -> None:
    """Documented limitation: crowdloop adds tasks after start, which Rapid/Studio forbid."""
    rapid = FakeScale(rapid=True)
    recorder = Recorder(rapid.transport())
    client = ScaleCredentials(api_key=SecretStr(API_KEY)).get_client(transport=recorder)
    with ScaleConnector(client, ScaleOptions(project="p", create_projects=True)) as connector:
        batch = connector.create_batch(spec(), idempotency_key=KEY)
        connector.start(batch)
        with pytest.raises(InvalidRequest, match="finalized"):
            connector.add_items(batch, compare_items(1), idempotency_key="k")


# --- tasks -----------------------------------------------------------------------------------


def test_add_items_fans_overlap_out_into_keyed_comparison_tasks(
    make: Make, fake: FakeScale
) -> None:
    connector, rec = make(compare_task_type="comparison")  # the legacy endpoint, opt-in
    batch = connector.create_batch(spec(), idempotency_key=KEY)
    items = [*compare_items(1, overlap=3), *compare_items(1, overlap=1, prefix="solo")]
    result = connector.add_items(batch, items, idempotency_key="chunk-1")
    name = batch.external_id

    lookups = rec.sent("GET", r"^/v1/tasks$")
    assert len(lookups) == 1
    assert lookups[0].url.params["batch"] == name
    assert lookups[0].url.params.get_list("unique_id") == [
        f"{name}/item-0.0#0",
        f"{name}/item-0.0#1",
        f"{name}/item-0.0#2",
        f"{name}/solo-0.0#0",
    ]
    bodies = rec.bodies("POST", r"^/v1/task/comparison$")
    assert [b["unique_id"] for b in bodies] == lookups[0].url.params.get_list("unique_id")
    first = bodies[0]
    assert first["batch"] == name and "project" not in first and "callback_url" not in first
    assert first["attachment_type"] == "text"
    assert first["attachments"] == ["Nile, Amazon (0)", "Danube, Rhine (0)"]
    assert first["choices"] == list(COMPARE_CHOICES)
    assert "Top 5 rivers (0)" in first["instruction"]
    assert first["instruction"].startswith("Which answer is better?")
    assert first["metadata"] == {
        "crowdloop_key": "item-0.0",
        "crowdloop_group": "item-0",
        "crowdloop_kind": "compare",
        "crowdloop_slot": 0,
        "crowdloop_overlap": 3,
    }
    assert [b["metadata"]["crowdloop_slot"] for b in bodies] == [0, 1, 2, 0]
    assert result.external_ids == {
        "item-0.0": fake.by_unique_id[f"{name}/item-0.0#0"],
        "solo-0.0": fake.by_unique_id[f"{name}/solo-0.0#0"],
    }

    # A replay finds every unique_id and creates nothing.
    again = connector.add_items(batch, items, idempotency_key="chunk-1")
    assert again == result
    assert len(rec.sent("POST", r"^/v1/task/")) == 4
    assert fake.created() == (1, 2)


def test_a_create_lost_behind_a_5xx_is_resolved_by_its_unique_id(
    make: Make, fake: FakeScale, waits: list[float]
) -> None:
    connector, rec = make(compare_task_type="comparison")  # the legacy endpoint, opt-in
    batch = connector.create_batch(spec(), idempotency_key=KEY)

    class LoseFirstAnswer(httpx.BaseTransport):
        def __init__(self) -> None:
            self.lost = False

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            answer = fake.transport().handle_request(request)
            if not self.lost and request.url.path == "/v1/task/comparison":
                self.lost = True
                return httpx.Response(502, json={"error": "bad gateway"})
            return answer

    rec.inner = LoseFirstAnswer()
    result = connector.add_items(batch, compare_items(1, overlap=1), idempotency_key="k")
    posts = rec.sent("POST", r"^/v1/task/comparison$")
    assert len(posts) == 2  # the retry was answered 409 ...
    retry_lookup = rec.sent("GET", r"^/v1/tasks$")[-1]
    assert "batch" not in retry_lookup.url.params  # ... and resolved like the SDK does
    assert retry_lookup.url.params.get_list("unique_id") == [f"{batch.external_id}/item-0.0#0"]
    assert result.external_ids == {"item-0.0": next(iter(fake.tasks))}
    assert waits == [0.5]
    assert fake.created() == (1, 1)


def test_a_unique_id_held_by_a_task_in_another_batch_is_refused(
    make: Make, fake: FakeScale
) -> None:
    connector, _ = make()
    batch = connector.create_batch(spec(), idempotency_key=KEY)
    other = connector.create_batch(spec(), idempotency_key="crowdloop:other:compare:batch")
    connector.add_items(other, compare_items(1, overlap=1), idempotency_key="k")
    # Someone moved our unique_id onto a task of another batch.
    (task,) = fake.tasks.values()
    uid = f"{batch.external_id}/item-0.0#0"
    del fake.by_unique_id[task["unique_id"]]
    task["unique_id"] = uid
    fake.by_unique_id[uid] = task["task_id"]
    with pytest.raises(AlreadyExists, match="outside batch"):
        connector.add_items(batch, compare_items(1, overlap=1), idempotency_key="k")


def test_a_half_published_item_is_not_found_and_its_missing_slots_are_filled(
    make: Make, fake: FakeScale
) -> None:
    connector, rec = make()
    batch = connector.create_batch(spec(), idempotency_key=KEY)
    items = compare_items(2, overlap=3)
    ids = connector.add_items(batch, items, idempotency_key="k").external_ids
    # As if the process died before the last slot of item-1 was created.
    lost = f"{batch.external_id}/item-1.0#2"
    del fake.tasks[fake.by_unique_id.pop(lost)]

    keys = [i.key for i in items] + ["never-pushed.0"]
    assert connector.find_tasks(batch, keys) == {"item-0.0": ids["item-0.0"]}
    before = len(rec.sent("POST", r"^/v1/task/"))
    assert connector.add_items(batch, items[1:], idempotency_key="k2").external_ids == {
        "item-1.0": ids["item-1.0"]
    }
    assert rec.bodies("POST", r"^/v1/task/")[before:] == [
        rec.bodies("POST", r"^/v1/task/")[5]  # the same body as the first time
    ]
    assert connector.find_tasks(batch, keys) == ids


def test_unique_id_lookups_are_chunked(make: Make) -> None:
    connector, rec = make()
    batch = BatchRef(connector="scale", external_id="b")
    keys = [f"{'k' * 40}-{i}.0" for i in range(150)]
    assert connector.find_tasks(batch, keys) == {}
    lookups = rec.sent("GET", r"^/v1/tasks$")
    assert len(lookups) >= 3
    assert sum(len(r.url.params.get_list("unique_id")) for r in lookups) == 150
    for request in lookups:
        assert len(request.url.params.get_list("unique_id")) <= 100
        assert len(str(request.url)) < 4000


def test_long_keys_are_hashed_into_the_unique_id_and_kept_in_metadata(
    make: Make, fake: FakeScale
) -> None:
    connector, _ = make()
    batch = connector.create_batch(spec(), idempotency_key=KEY)
    item = compare_items(1, overlap=1)[0].model_copy(update={"key": "x" * 300})
    ids = connector.add_items(batch, [item], idempotency_key="k").external_ids
    (task,) = fake.tasks.values()
    assert len(task["unique_id"]) <= MAX_UNIQUE_ID
    assert "/sha256:" in task["unique_id"]
    assert task["metadata"]["crowdloop_key"] == "x" * 300
    assert connector.find_tasks(batch, ["x" * 300]) == ids


def test_writing_and_verify_items_become_textcollection_forms(make: Make) -> None:
    connector, rec = make()
    batch = connector.create_batch(spec(Stage.RESPONSES), idempotency_key=WRITE_KEY)
    items = [
        TaskItem(
            key="p-1.0",
            group="p-1",
            payload=WritePromptTask(instruction="Write a prompt.", topic="rivers"),
            overlap=1,
        ),
        TaskItem(
            key="r-1.0",
            group="r-1",
            payload=WriteResponseTask(instruction="Answer it.", prompt="Name five rivers"),
            overlap=1,
        ),
        TaskItem(
            key="v-1.0",
            group="v-1",
            payload=VerifyTask(
                instruction="Judge it.", target="response", prompt="Name five rivers", text="Nile"
            ),
            overlap=1,
        ),
    ]
    connector.add_items(batch, items, idempotency_key="k")
    prompt, response, verify = rec.bodies("POST", r"^/v1/task/textcollection$")
    assert prompt["instruction"] == "Write a prompt."
    assert prompt["attachments"] == [{"type": "text", "content": "**Topic**\n\nrivers"}]
    assert prompt["fields"] == [
        {"type": "text", "field_id": "text", "title": "Write the prompt", "required": True}
    ]
    assert response["attachments"] == [
        {"type": "text", "content": "**Prompt**\n\nName five rivers"}
    ]
    assert [a["content"] for a in verify["attachments"]] == [
        "**Prompt**\n\nName five rivers",
        "**Response to judge**\n\nNile",
    ]
    (field,) = verify["fields"]
    assert field["type"] == "category" and field["field_id"] == "verdict"
    assert [c["value"] for c in field["choices"]] == ["accept", "reject"]
    assert field["min_choices"] == field["max_choices"] == 1
    assert verify["metadata"]["crowdloop_kind"] == "verify"


def test_exclude_workers_is_refused_before_anything_is_sent(make: Make) -> None:
    connector, rec = make()
    item = compare_items(1)[0].model_copy(update={"exclude_workers": ("scale:abc",)})
    with pytest.raises(NotSupported, match="exclude_workers"):
        connector.add_items(
            BatchRef(connector="scale", external_id="b"), [item], idempotency_key="k"
        )
    assert rec.requests == []


# --- results ---------------------------------------------------------------------------------


def test_results_page_through_a_window_and_map_to_preferences(make: Make, fake: FakeScale) -> None:
    clock = fake.clock
    connector, rec = make(compare_task_type="comparison")  # the legacy endpoint, opt-in
    batch = connector.create_batch(spec(), idempotency_key=KEY)
    items = compare_items(4)
    connector.add_items(batch, items, idempotency_key="k")
    connector.start(batch)
    assert fake.answer_batch(batch.external_id) == 8
    clock.now = latest_completion(fake) + timedelta(milliseconds=5)
    rec.requests.clear()

    pages = read_all(connector, batch, None)
    assert [p.has_more for p in pages] == [True, True, False]
    assert [len(p.submissions) for p in pages] == [3, 3, 2]
    read = subs(pages)
    assert len({s.external_id for s in read}) == 8
    for submission in read:
        task = fake.tasks[submission.external_id]
        assert submission.worker_id == f"scale:{submission.external_id}"
        assert submission.task_key == task["metadata"]["crowdloop_key"]
        assert submission.answer == PreferenceAnswer(
            choice=COMPARE_CHOICES[task["response"]["choice"]]
        )
        assert submission.submitted_at == datetime.fromisoformat(task["completed_at"])
    queries = [r.url.params for r in rec.sent("GET", r"^/v1/tasks$")]
    assert len(queries) == 3
    for query in queries:
        assert query["batch"] == batch.external_id
        assert query["status"] == "completed"
        assert query["limit"] == "3"
        assert query["completed_before"] == queries[0]["completed_before"]
        assert "completed_after" not in query
    assert "next_token" not in queries[0]
    assert queries[1]["next_token"] and queries[2]["next_token"]

    # The last cursor starts the next window where this one ended: nothing is read twice.
    rec.requests.clear()
    assert subs(read_all(connector, batch, pages[-1].cursor)) == []
    (query,) = [r.url.params for r in rec.sent("GET", r"^/v1/tasks$")]
    ended = datetime.fromisoformat(queries[0]["completed_before"])
    assert datetime.fromisoformat(query["completed_after"]) == ended - timedelta(milliseconds=1)

    # Work finished later is read from that cursor, and only it.
    more = compare_items(1, prefix="late")
    connector.add_items(batch, more, idempotency_key="k2")
    fake.answer_batch(batch.external_id)
    clock.now = latest_completion(fake) + timedelta(milliseconds=5)
    late = subs(read_all(connector, batch, pages[-1].cursor))
    assert sorted(s.task_key for s in late) == ["late-0.0", "late-0.0"]


def test_completions_younger_than_settle_s_wait_for_the_next_window(
    make: Make, fake: FakeScale
) -> None:
    clock = fake.clock
    connector, _ = make(settle_s=60.0)
    batch = connector.create_batch(spec(), idempotency_key=KEY)
    connector.add_items(batch, compare_items(2, overlap=1), idempotency_key="k")
    fake.answer_batch(batch.external_id)
    done = latest_completion(fake)
    clock.now = done + timedelta(seconds=30)
    first = read_all(connector, batch, None)
    assert subs(first) == []
    clock.now = done + timedelta(seconds=90)
    second = read_all(connector, batch, first[-1].cursor)
    assert len(subs(second)) == 2


def test_a_refused_next_token_rereads_the_window(
    make: Make, fake: FakeScale, caplog: pytest.LogCaptureFixture
) -> None:
    connector, _ = make()
    batch = connector.create_batch(spec(), idempotency_key=KEY)
    connector.add_items(batch, compare_items(4), idempotency_key="k")
    fake.answer_batch(batch.external_id)
    first = next(iter(connector.iter_submissions(batch, cursor=None)))
    fake.refuse_tokens = True
    with caplog.at_level(logging.WARNING, logger="crowdloop.connectors.scale.connector"):
        rest = next(iter(connector.iter_submissions(batch, cursor=first.cursor)))
    assert "next_token refused" in caplog.text
    assert [s.external_id for s in rest.submissions] == [s.external_id for s in first.submissions]


def test_garbled_and_foreign_tasks_are_quarantined_not_dropped(make: Make, fake: FakeScale) -> None:
    connector, _ = make(compare_task_type="comparison")  # the legacy endpoint, opt-in
    compare = connector.create_batch(spec(), idempotency_key=KEY)
    connector.add_items(compare, compare_items(2, overlap=1), idempotency_key="k")
    a, b = (t["task_id"] for t in fake.tasks.values())
    fake.complete(a, {"choice": "Both are bad"})
    fake.complete(b, "yes")
    # A task someone else put into our batch, without crowdloop metadata.
    with httpx.Client(transport=fake.transport(), base_url=BASE, auth=(API_KEY, "")) as other:
        stranger = other.post(
            "/v1/task/comparison",
            json={
                "batch": compare.external_id,
                "instruction": "Same pattern?",
                "attachments": ["a.jpg", "b.jpg"],
                "choices": ["yes", "no"],
            },
        ).json()
    fake.complete(stranger["task_id"], {"choice": "yes"})

    writing = connector.create_batch(spec(Stage.RESPONSES), idempotency_key=WRITE_KEY)
    verify = TaskItem(
        key="v-1.0",
        group="v-1",
        payload=VerifyTask(instruction="Judge.", target="prompt", prompt="p", text="t"),
        overlap=1,
    )
    write = TaskItem(
        key="w-1.0",
        group="w-1",
        payload=WriteResponseTask(instruction="Answer.", prompt="p"),
        overlap=1,
    )
    connector.add_items(writing, [verify, write], idempotency_key="k")
    v_id = fake.by_unique_id[f"{writing.external_id}/v-1.0#0"]
    w_id = fake.by_unique_id[f"{writing.external_id}/w-1.0#0"]
    fake.complete(v_id, {"annotations": {"verdict": ["accept", "reject"]}})
    fake.complete(w_id, {"annotations": {"text": ""}})

    bad = {q.external_id: q for q in quarantined(read_all(connector, compare, None))}
    bad |= {q.external_id: q for q in quarantined(read_all(connector, writing, None))}
    assert set(bad) == {a, b, stranger["task_id"], v_id, w_id}
    assert "choice 'Both are bad' is not one of ours" in bad[a].reason
    assert "response is not an object" in bad[b].reason
    assert "not a crowdloop task" in bad[stranger["task_id"]].reason
    assert bad[stranger["task_id"]].task_key is None
    assert "expected one value" in bad[v_id].reason
    assert bad[w_id].reason.startswith("bad text answer")
    for task_id, q in bad.items():
        assert json.loads(q.raw)["task_id"] == task_id
        assert q.worker_id == f"scale:{task_id}"
    assert bad[a].task_key == fake.tasks[a]["metadata"]["crowdloop_key"]


def test_compare_defaults_to_the_documented_textcollection_type(make: Make) -> None:
    connector, rec = make()
    compare = connector.create_batch(spec(), idempotency_key=KEY)
    connector.add_items(compare, compare_items(1, overlap=1), idempotency_key="k")
    assert rec.sent("POST", r"^/v1/task/comparison$") == []
    assert len(rec.bodies("POST", r"^/v1/task/textcollection$")) == 1


def test_writing_verify_and_textcollection_comparisons_map_back(
    make: Make, fake: FakeScale
) -> None:
    connector, rec = make(compare_task_type="textcollection")
    compare = connector.create_batch(spec(), idempotency_key=KEY)
    assert fake.batches[compare.external_id]["project"] == "rlhf-text"
    connector.add_items(compare, compare_items(1, overlap=1), idempotency_key="k")
    (body,) = rec.bodies("POST", r"^/v1/task/textcollection$")
    assert [c["value"] for c in body["fields"][0]["choices"]] == ["left", "right", "tie"]
    assert [a["content"] for a in body["attachments"]][1:] == [
        "**Response A**\n\nNile, Amazon (0)",
        "**Response B**\n\nDanube, Rhine (0)",
    ]
    (task_id,) = fake.tasks
    fake.complete(task_id, {"annotations": {"preference": ["right"]}})
    (submission,) = subs(read_all(connector, compare, None))
    assert submission.answer == PreferenceAnswer(choice="right")

    writing = connector.create_batch(spec(Stage.VERIFY), idempotency_key=WRITE_KEY)
    items = [
        TaskItem(
            key="v.0",
            group="v",
            payload=VerifyTask(instruction="Judge.", target="prompt", prompt="p", text="t"),
            overlap=1,
        ),
        TaskItem(
            key="w.0",
            group="w",
            payload=WritePromptTask(instruction="Write.", topic="lakes"),
            overlap=1,
        ),
    ]
    connector.add_items(writing, items, idempotency_key="k")
    fake.complete(
        fake.by_unique_id[f"{writing.external_id}/v.0#0"], {"annotations": {"verdict": ["reject"]}}
    )
    fake.complete(
        fake.by_unique_id[f"{writing.external_id}/w.0#0"],
        {"annotations": {"text": "Which lake is deepest?"}},
    )
    answers = {s.task_key: s.answer for s in subs(read_all(connector, writing, None))}
    assert answers == {
        "v.0": VerdictAnswer(verdict="reject"),
        "w.0": TextAnswer(text="Which lake is deepest?"),
    }


def test_rate_limits_and_server_errors_on_results_are_waited_out(
    make: Make, fake: FakeScale, waits: list[float]
) -> None:
    connector, rec = make()
    batch = connector.create_batch(spec(), idempotency_key=KEY)
    connector.add_items(batch, compare_items(1, overlap=1), idempotency_key="k")
    fake.answer_batch(batch.external_id)
    rec.script = [
        ("GET", r"^/v1/tasks$", httpx.Response(429, headers={"Retry-After": "7"}, json={})),
        ("GET", r"^/v1/tasks$", httpx.Response(503, json={"error": "unavailable"})),
    ]
    assert len(subs(read_all(connector, batch, None))) == 1
    assert waits == [7.0, 1.0]


def test_a_bad_key_fails_at_once_without_leaking_it(make: Make, waits: list[float]) -> None:
    connector, rec = make(api_key="live_wrong_key_4242")
    with pytest.raises(AuthError, match=r"\[scale\]") as caught:
        connector.create_batch(spec(), idempotency_key=KEY)
    assert len(rec.requests) == 1
    assert waits == []
    token = base64.b64encode(b"live_wrong_key_4242:").decode()
    assert "live_wrong_key_4242" not in str(caught.value)
    assert token not in str(caught.value)
    assert "live_wrong_key_4242" not in repr(
        ScaleCredentials(api_key=SecretStr("live_wrong_key_4242"))
    )


# --- control, review, what Scale cannot do ---------------------------------------------------


def test_stop_cancels_untouched_tasks_and_status_counts_them(make: Make, fake: FakeScale) -> None:
    connector, rec = make()
    batch = connector.create_batch(spec(), idempotency_key=KEY)
    connector.add_items(batch, compare_items(4, overlap=1), idempotency_key="k")
    connector.start(batch)
    done, busy, idle_1, idle_2 = fake.tasks
    fake.complete(done, {"choice": next(iter(COMPARE_CHOICES))})
    fake.started.add(busy)
    before = connector.get_status(batch)
    assert (before.state, before.tasks, before.assignments_total) == (BatchState.OPEN, 4, 4)
    assert before.assignments_submitted == 1

    connector.stop(batch, reason="budget spent")
    cancels = {r.url.path.split("/")[3] for r in rec.sent("POST", r"/cancel$")}
    assert cancels == {busy, idle_1, idle_2}
    assert [fake.tasks[t]["status"] for t in (done, busy, idle_1, idle_2)] == [
        "completed",
        "pending",
        "canceled",
        "canceled",
    ]
    after = connector.get_status(batch)
    assert (after.tasks, after.assignments_total, after.assignments_submitted) == (4, 2, 1)


def test_review_audits_each_decision_once(make: Make, fake: FakeScale) -> None:
    connector, rec = make()
    batch = connector.create_batch(spec(), idempotency_key=KEY)
    connector.add_items(batch, compare_items(2, overlap=1), idempotency_key="k")
    fake.answer_batch(batch.external_id)
    first, second = subs(read_all(connector, batch, None))
    decisions = [
        ReviewDecision(submission_id=first.external_id, accept=True),
        ReviewDecision(
            submission_id=second.external_id, accept=False, comment="ignored the prompt"
        ),
    ]
    connector.review(batch, decisions)
    connector.review(batch, decisions)
    audits = rec.sent("POST", r"/audit$")
    assert [r.url.path for r in audits] == [
        f"/v1/task/{first.external_id}/audit",
        f"/v1/task/{second.external_id}/audit",
    ]
    assert [json.loads(r.content) for r in audits] == [
        {"accepted": True, "comments": None},
        {"accepted": False, "comments": "ignored the prompt"},
    ]
    assert fake.tasks[second.external_id]["customer_review_status"] == "rejected"


def test_no_worker_blocking_no_spend_report(make: Make) -> None:
    connector, rec = make()
    batch = BatchRef(connector="scale", external_id="b")
    with pytest.raises(NotSupported, match="block_worker"):
        connector.block_worker("scale:abc", scope=BlockScope.CAMPAIGN, reason="golden")
    assert connector.spend(batch) is None
    assert rec.requests == []


# --- configuration ---------------------------------------------------------------------------


def test_from_config_reads_the_environment_and_validates_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CROWDLOOP_SCALE_API_KEY", "live_env_key")
    monkeypatch.delenv("CROWDLOOP_SCALE_BASE_URL", raising=False)
    with ScaleConnector.from_config({"project": "p", "page_limit": 50, "timeout_s": 9}, None) as c:
        assert c.options.page_limit == 50
        assert c.client.seam.base_url == BASE
        assert c.client.seam.timeout_s == 9
        expected = base64.b64encode(b"live_env_key:").decode()
        assert c.client.seam.auth_headers["Authorization"] == f"Basic {expected}"
    with pytest.raises(ValidationError):
        ScaleConnector.from_config({"project": "p", "page_limt": 50}, None)
    with pytest.raises(ValidationError):
        ScaleConnector.from_config({"project": "p", "page_limit": 101}, None)
    with pytest.raises(ValidationError):
        ScaleConnector.from_config({}, None)
    monkeypatch.delenv("CROWDLOOP_SCALE_API_KEY")
    with pytest.raises(RuntimeError, match="CROWDLOOP_SCALE_API_KEY"):
        ScaleConnector.from_config({"project": "p"}, None)


def test_from_config_loads_a_named_block(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[str] = []

    def load(name: str) -> ScaleCredentials:
        loaded.append(name)
        return ScaleCredentials(api_key=SecretStr("test_block_key"), base_url="https://x.test/")

    monkeypatch.setattr(ScaleCredentials, "load", staticmethod(load))
    with ScaleConnector.from_config({"project": "p", "retry_attempts": 2}, "scale-creds") as c:
        assert loaded == ["scale-creds"]
        assert c.client.seam.base_url == "https://x.test"
        assert c.client.seam.retry.attempts == 2
    assert ScaleCredentials(api_key=SecretStr("test_block_key")).test_mode


def test_an_unreadable_cursor_is_refused(make: Make) -> None:
    connector, _ = make()
    with pytest.raises(ValueError, match="unreadable results cursor"):
        next(
            iter(
                connector.iter_submissions(
                    BatchRef(connector="scale", external_id="b"), cursor="page-3"
                )
            )
        )
