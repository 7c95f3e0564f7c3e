"""A small preference campaign through a real Label Studio server.

Start one with `eval "$(bash .ci/labelstudio.sh)"` (it prints CROWDLOOP_LS_URL and the
tokens). Without CROWDLOOP_LS_URL the test is skipped, except under CI (`CI` set), where
it fails: CI must not skip it silently.

crowdloop pushes compare tasks (golden pairs mixed in) with the connector, through the
same stage calls the flows make (`bare_ops`). Five annotators sign up on the server the
way people do (the signup form), create their own personal access tokens and annotate
through Label Studio's API with them: four answer by the true quality of each answer,
one spammer clicks "A" on every task of the first push. crowdloop syncs, checks workers
on the golden pairs, re-asks what the spammer's exclusion left short, aggregates and
exports.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlmodel import col, select

from crowdloop.connectors.labelstudio.connector import LabelStudioConnector
from crowdloop.connectors.labelstudio.credentials import LabelStudioCredentials
from crowdloop.db import session_scope
from crowdloop.models.domain import BatchRef, BatchSpec, Money, Stage
from crowdloop.models.spec import CampaignSpec
from crowdloop.models.tables import (
    Batch,
    Item,
    Judgment,
    JudgmentStatus,
    TaskRecord,
    WorkerRecord,
    WorkerStatus,
)
from crowdloop.stages import export, preferences
from crowdloop.stages.plan import register_campaign
from crowdloop.stages.preflight import check_capabilities
from crowdloop.stages.rounds import bare_ops, run_rounds

pytestmark = pytest.mark.slow

PASSWORD = "annotate-Crowdloop-2026"
HONEST = 4

# Four prompts, three answers each; the number is the answer's true quality.
CANDIDATES: dict[str, list[tuple[str, int]]] = {
    "Name five fruits.": [
        ("1. apple 2. pear 3. plum 4. mango 5. kiwi", 3),
        ("1. apple 2. pear 3. carrot", 2),
        ("I like trains.", 1),
    ],
    "Name five rivers.": [
        ("1. Nile 2. Amazon 3. Danube 4. Volga 5. Rhine", 3),
        ("1. Nile 2. Amazon 3. Everest", 2),
        ("Rivers are wet.", 1),
    ],
    "Name five planets.": [
        ("1. Mercury 2. Venus 3. Earth 4. Mars 5. Jupiter", 3),
        ("1. Mars 2. Pluto 3. the Moon", 2),
        ("Space is big.", 1),
    ],
    "Name five colours.": [
        ("1. red 2. green 3. blue 4. yellow 5. purple", 3),
        ("1. red 2. loud 3. blue", 2),
        ("Colours are nice.", 1),
    ],
}
# Clear-cut controls; a spammer who always picks A gets one of six right.
GOLDEN: list[tuple[str, str, str, str]] = [
    ("Name five trees.", "no idea", "1. oak 2. elm 3. ash 4. pine 5. birch", "right"),
    ("Name five birds.", "a car", "1. robin 2. crow 3. owl 4. swan 5. wren", "right"),
    ("Name five metals.", "blue", "1. iron 2. gold 3. zinc 4. lead 5. tin", "right"),
    (
        "Name five oceans.",
        "maybe",
        "1. Pacific 2. Atlantic 3. Indian 4. Arctic 5. Southern",
        "right",
    ),
    ("Name five dogs.", "??", "1. beagle 2. pug 3. boxer 4. collie 5. husky", "right"),
    ("Name five cats.", "1. siamese 2. persian 3. bengal 4. sphynx 5. ragdoll", "a fish", "left"),
]
TRUTH: dict[str, int] = {text: q for answers in CANDIDATES.values() for text, q in answers}
for _, left, right, answer in GOLDEN:
    TRUTH[left], TRUTH[right] = (2, 1) if answer == "left" else (1, 2)


# --- the server and its people ------------------------------------------------------------------


@pytest.fixture(scope="module")
def ls_url() -> str:
    url = os.environ.get("CROWDLOOP_LS_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail(
                "CROWDLOOP_LS_URL is not set: CI must start Label Studio "
                '(eval "$(bash .ci/labelstudio.sh)") before the tests'
            )
        pytest.skip('CROWDLOOP_LS_URL is not set; start one: eval "$(bash .ci/labelstudio.sh)"')
    if not os.environ.get("CROWDLOOP_LS_TOKEN"):
        pytest.fail("CROWDLOOP_LS_URL is set but CROWDLOOP_LS_TOKEN is not")
    return url.rstrip("/")


@dataclass
class Annotator:
    name: str
    honest: bool
    user_id: int
    client: httpx.Client  # carries the annotator's own Bearer access token
    personal_token: str

    def bearer(self) -> None:
        answer = self.client.post("/api/token/refresh/", json={"refresh": self.personal_token})
        answer.raise_for_status()
        self.client.headers["Authorization"] = f"Bearer {answer.json()['access']}"

    def get(self, path: str, params: dict[str, Any]) -> Any:
        answer = self.client.get(path, params=params)
        if answer.status_code == 401:
            self.bearer()
            answer = self.client.get(path, params=params)
        return answer.raise_for_status().json()

    def annotate(self, task_id: int, choice: str) -> None:
        body = {
            "result": [
                {
                    "id": f"t{task_id}-u{self.user_id}",
                    "from_name": "preference",
                    "to_name": "prompt",
                    "type": "choices",
                    "origin": "manual",
                    "value": {"choices": [choice]},
                }
            ],
            "lead_time": 3.5,
        }
        answer = self.client.post(f"/api/tasks/{task_id}/annotations/", json=body)
        if answer.status_code == 401:  # the 5-minute access token ran out
            self.bearer()
            answer = self.client.post(f"/api/tasks/{task_id}/annotations/", json=body)
        answer.raise_for_status()


def sign_up(url: str, name: str, honest: bool) -> Annotator:
    """Sign up through the web form, then create a personal access token with the session."""
    email = f"{name}-{uuid.uuid4().hex[:8]}@annotators.test"
    with httpx.Client(base_url=url, timeout=30) as web:
        web.get("/user/signup/")
        signup = web.post(
            "/user/signup/",
            data={
                "email": email,
                "password": PASSWORD,
                "csrfmiddlewaretoken": web.cookies["csrftoken"],
            },
            headers={"Referer": f"{url}/user/signup/"},
        )
        assert signup.status_code == 302, f"signup of {email} failed: {signup.text[:300]}"
        csrf = {"X-CSRFToken": web.cookies["csrftoken"], "Referer": f"{url}/"}
        user_id = web.get("/api/current-user/whoami").raise_for_status().json()["id"]
        token = web.post("/api/token/", json={}, headers=csrf).raise_for_status().json()["token"]
    annotator = Annotator(name, honest, int(user_id), httpx.Client(base_url=url, timeout=30), token)
    annotator.bearer()
    return annotator


def honest_choice(data: dict[str, Any]) -> str:
    left, right = TRUTH[data["left"]], TRUTH[data["right"]]
    return "left" if left > right else "right" if right > left else "tie"


class Crowd(threading.Thread):
    """Plays the label stream: hands open tasks to annotators who have not seen the pair.

    The spammer is eager and answers every task of the first push; honest annotators fill
    the other places, each at most once per pair (`crowdloop_group`).
    """

    def __init__(self, url: str, title: str, people: list[Annotator]) -> None:
        super().__init__(daemon=True)
        # The dispatcher reads the queue as the admin, with the admin's own access token.
        self.admin = Annotator("admin", True, 0, httpx.Client(base_url=url, timeout=30), "")
        self.admin.personal_token = os.environ["CROWDLOOP_LS_TOKEN"]
        self.admin.bearer()
        self.title = title
        self.people = people
        self.seen: dict[str, set[int]] = defaultdict(set)  # group -> annotators
        self.horizon: int | None = None  # the spammer's last task
        self.posted = 0
        self.errors: list[BaseException] = []
        self.halt = threading.Event()

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                self.step()
                self.halt.wait(0.3)
        except BaseException as exc:
            self.errors.append(exc)

    def tasks(self, project_id: int) -> list[dict[str, Any]]:
        out, page = [], 1
        while True:
            params = {"project": project_id, "fields": "all", "page": page, "page_size": 100}
            body = self.admin.get("/api/tasks/", params=params)
            out.extend(body["tasks"])
            if page * 100 >= body["total"]:
                return out
            page += 1

    def step(self) -> None:
        projects = self.admin.get("/api/projects/", params={"title": self.title})
        for project in projects["results"]:
            tasks = sorted(self.tasks(project["id"]), key=lambda t: t["id"])
            if tasks and self.horizon is None:
                self.horizon = tasks[-1]["id"]
            for task in tasks:
                group = task["data"]["crowdloop_group"]
                done = {a["completed_by"] for a in task["annotations"]}
                self.seen[group] |= done
                need = task["overlap"] - len(task["annotations"])
                spammer_turn = self.horizon is not None and task["id"] <= self.horizon
                order = sorted(
                    self.people,
                    key=lambda p: (p.honest, (p.user_id + task["id"]) % len(self.people)),
                )
                for person in order:
                    if need <= 0:
                        break
                    if person.user_id in self.seen[group] or (
                        not person.honest and not spammer_turn
                    ):
                        continue
                    person.annotate(
                        task["id"], honest_choice(task["data"]) if person.honest else "left"
                    )
                    self.seen[group].add(person.user_id)
                    self.posted += 1
                    need -= 1


# --- the campaign -------------------------------------------------------------------------------


def write_campaign(folder: Path, name: str) -> CampaignSpec:
    candidates = [
        {
            "prompt_id": f"p{p}",
            "prompt": prompt,
            "response_id": f"p{p}-r{r}",
            "response": text,
            "model": f"model-q{quality}",
        }
        for p, (prompt, answers) in enumerate(CANDIDATES.items())
        for r, (text, quality) in enumerate(answers)
    ]
    golden = [
        {"id": f"g{n}", "prompt": prompt, "left": left, "right": right, "answer": answer}
        for n, (prompt, left, right, answer) in enumerate(GOLDEN)
    ]
    for file, rows in (("candidates.jsonl", candidates), ("golden.jsonl", golden)):
        (folder / file).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return CampaignSpec.model_validate(
        {
            "name": name,
            "connector": {"name": "labelstudio", "options": {"settle_s": 1.0}},
            "output_dir": str(folder),
            "poll_interval_s": 0.5,
            "stage_timeout_s": 180,
            "quality": {"min_golden": 3, "on_fail": "exclude", "max_requeue_rounds": 2},
            "preferences": {
                "candidates_file": str(folder / "candidates.jsonl"),
                "pairing": {"design": "all"},
                "golden_file": str(folder / "golden.jsonl"),
                "golden_share": 0.3,
                "overlap": 3,
                "dynamic_overlap": None,
                "aggregation": "bradley_terry",
                "export": {"path": str(folder / "preferences.jsonl")},
            },
        }
    )


@pytest.fixture
def connector(ls_url: str) -> Iterator[LabelStudioConnector]:
    # The personal access token from the environment: the Bearer exchange, not legacy.
    credentials = LabelStudioCredentials(
        base_url=ls_url, api_key=SecretStr(os.environ["CROWDLOOP_LS_TOKEN"])
    )
    assert credentials.scheme() == "personal_access_token"
    with LabelStudioConnector(credentials.get_client(), settle_s=1.0) as made:
        yield made


def test_preference_campaign_through_label_studio(
    ls_url: str, connector: LabelStudioConnector, sqlite_url: str, tmp_path: Path
) -> None:
    name = f"ls-live-{uuid.uuid4().hex[:8]}"
    spec = write_campaign(tmp_path, name)
    with session_scope() as s:
        register_campaign(s, spec)
    warnings = check_capabilities(spec, connector)
    assert any("no review API" in w for w in warnings)

    people = [sign_up(ls_url, f"honest{n}", True) for n in range(HONEST)]
    spammer = sign_up(ls_url, "spammer", False)
    people.append(spammer)
    crowd = Crowd(ls_url, name, people)
    crowd.start()
    try:
        rounds = run_rounds(name, [Stage.COMPARE], bare_ops(connector), advance=False, max_rounds=6)
    finally:
        crowd.halt.set()
        crowd.join(timeout=30)
    assert not crowd.errors, crowd.errors
    aggregate = preferences.aggregate_preferences(name, "bradley_terry")
    rows, path = export.export_preferences(name, tmp_path / "preferences.jsonl", 0.6)

    with session_scope() as s:
        batch = s.exec(select(Batch).where(Batch.campaign_id == name)).one()
        records = list(
            s.exec(
                select(TaskRecord)
                .join(Item, col(Item.id) == col(TaskRecord.item_id))
                .where(Item.campaign_id == name)
            )
        )
        judgments = list(s.exec(select(Judgment).where(Judgment.campaign_id == name)))
        workers = {
            w.worker_id: w
            for w in s.exec(select(WorkerRecord).where(WorkerRecord.campaign_id == name))
        }
    assert batch.external_id is not None
    ref = BatchRef(connector="labelstudio", external_id=batch.external_id)
    ls_tasks = crowd.tasks(int(batch.external_id))
    annotations = [a for t in ls_tasks for a in t["annotations"]]
    print(
        f"rounds={rounds} tasks={len(ls_tasks)} annotations={len(annotations)} "
        f"judgments={len(judgments)} rows={rows} aggregate={aggregate}"
    )

    # Every pushed task is on the server once, and every one of them was answered.
    real_pairs, golden_pairs = 12, 6  # "all" pairs of 3 answers x 4 prompts; ceil(12*.3/.7)
    assert rounds == 2
    assert len({r.external_id for r in records}) == len(records) == len(ls_tasks)
    assert len(ls_tasks) == 2 * (real_pairs + golden_pairs)  # the first push and the re-ask
    assert all(t["annotations"] for t in ls_tasks)
    assert {r.external_id for r in records} == {str(t["id"]) for t in ls_tasks}
    # What crowdloop stored is what annotators posted (read before the run ended).
    ids = {j.external_id for j in judgments}
    assert len(ids) == len(judgments)
    assert ids <= {str(a["id"]) for a in annotations}
    assert all(j.status == JudgmentStatus.VALID for j in judgments)
    assert len(judgments) >= 3 * (real_pairs + golden_pairs) + (real_pairs + golden_pairs)

    # The golden pairs caught the spammer; the honest annotators stay trusted.
    spam_id = str(spammer.user_id)
    assert workers[spam_id].status == WorkerStatus.EXCLUDED
    assert workers[spam_id].golden_total >= 3 and workers[spam_id].golden_correct <= 1
    spam = [j for j in judgments if j.worker_id == spam_id]
    assert len(spam) == real_pairs + golden_pairs
    assert all(j.excluded for j in spam)
    honest = [j for j in judgments if j.worker_id != spam_id]
    assert not any(j.excluded for j in honest)
    assert {str(p.user_id) for p in people if p.honest} <= set(workers)

    # Every real pair is exported, the truly better answer chosen.
    exported = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == len(exported) == real_pairs
    assert all(TRUTH[r["chosen"]] > TRUTH[r["rejected"]] for r in exported)
    status = connector.get_status(ref)
    assert status.tasks == len(ls_tasks)


def test_legacy_token_reaches_the_same_server(ls_url: str) -> None:
    legacy = os.environ.get("CROWDLOOP_LS_LEGACY_TOKEN")
    if not legacy:
        pytest.skip("CROWDLOOP_LS_LEGACY_TOKEN is not set (.ci/labelstudio.sh sets it)")
    credentials = LabelStudioCredentials(base_url=ls_url, api_key=SecretStr(legacy))
    assert credentials.scheme() == "legacy_token"
    with LabelStudioConnector(credentials.get_client()) as connector:
        spec = BatchSpec(
            name="legacy token check",
            stage=Stage.COMPARE,
            instruction="Which answer is better?",
            reward=Money(amount=Decimal("0")),
            campaign_id="legacy",
        )
        key = f"crowdloop:legacy-{uuid.uuid4().hex[:8]}:compare:batch"
        batch = connector.create_batch(spec, idempotency_key=key)
        assert connector.find_batch(key) == batch
        assert connector.create_batch(spec, idempotency_key=key) == batch
        assert connector.get_status(batch).tasks == 0
        assert connector.client.tokens is None
