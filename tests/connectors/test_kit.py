"""The connector kit every connector shares: `create_once` on the seam's retry policy, the
credentials base (`from_env` driven by declared variables), and the quarantine helpers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import ClassVar

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from crowdloop.connectors._http import HttpSeam, RetryPolicy, create_once
from crowdloop.connectors.answers import first_error, quarantined
from crowdloop.connectors.credentials import ConnectorCredentials
from crowdloop.connectors.errors import NotFound, RateLimited, TransientError
from crowdloop.connectors.simulator.credentials import (
    ENV_TIMEOUT,
    ENV_TOKEN,
    ENV_URL,
    SimulatorCredentials,
)
from crowdloop.connectors.toloka.credentials import ENV_KEY, ENV_SCHEME, TolokaCredentials

POLICY = RetryPolicy(attempts=4, base_delay_s=0.5, max_delay_s=30.0, max_retry_after_s=120.0)


SLEPT: dict[int, list[float]] = {}


@pytest.fixture
def seam() -> Iterator[HttpSeam]:
    sleeps: list[float] = []
    made = HttpSeam(connector="acme", base_url="http://acme.test", retry=POLICY)
    made.sleep = sleeps.append
    SLEPT[id(made)] = sleeps
    yield made
    made.close()
    del SLEPT[id(made)]


def slept(seam: HttpSeam) -> list[float]:
    """The waits the create loop asked for (recorded, not slept)."""
    return SLEPT[id(seam)]


class Market:
    """A marketplace without idempotency keys, scripted call by call."""

    def __init__(self, failures: list[Exception], *, lands: bool = False) -> None:
        self.failures = failures  # raised by successive creates, then creates succeed
        self.lands = lands  # a failed create still made the object (a 500 after the write)
        self.objects: list[str] = []
        self.calls: list[str] = []

    def create(self) -> str:
        self.calls.append("create")
        if self.failures:
            failure = self.failures.pop(0)
            if self.lands:
                self.objects.append(f"obj-{len(self.objects) + 1}")
            raise failure
        self.objects.append(f"obj-{len(self.objects) + 1}")
        return self.objects[-1]

    def find(self) -> str | None:
        self.calls.append("find")
        return self.objects[0] if self.objects else None


def server_error() -> TransientError:
    return TransientError("acme", "POST /jobs -> HTTP 500: boom")


def test_an_object_already_there_is_found_and_not_created(seam: HttpSeam) -> None:
    market = Market([])
    market.objects.append("obj-old")
    assert create_once(seam, "job", market.create, market.find) == "obj-old"
    assert market.calls == ["find"]


def test_a_create_that_landed_behind_a_500_is_found_not_repeated(seam: HttpSeam) -> None:
    market = Market([server_error()], lands=True)
    assert create_once(seam, "job", market.create, market.find) == "obj-1"
    assert market.calls == ["find", "create", "find"]
    assert market.objects == ["obj-1"]
    assert slept(seam) == []


def test_a_create_that_did_not_land_is_sent_again_after_the_policy_backoff(
    seam: HttpSeam,
) -> None:
    market = Market([server_error(), server_error()])
    assert create_once(seam, "job", market.create, market.find) == "obj-1"
    assert market.calls == ["find", "create", "find", "create", "find", "create"]
    assert slept(seam) == [0.5, 1.0]


def test_out_of_attempts_the_create_error_is_raised_after_a_last_look(seam: HttpSeam) -> None:
    market = Market([server_error() for _ in range(5)])
    with pytest.raises(TransientError, match="HTTP 500"):
        create_once(seam, "job", market.create, market.find, attempts=3)
    assert market.calls.count("create") == 3
    assert market.calls[-1] == "find"
    assert slept(seam) == [0.5, 1.0]
    assert market.objects == []


def test_a_429_is_looked_up_unless_the_vendor_says_it_was_refused(seam: HttpSeam) -> None:
    limited = Market([RateLimited("acme", "429", retry_after=7)])
    assert create_once(seam, "job", limited.create, limited.find) == "obj-1"
    assert limited.calls == ["find", "create", "find", "create"]
    refused = Market([RateLimited("acme", "429", retry_after=7)])
    assert (
        create_once(seam, "job", refused.create, refused.find, rate_limit_refused=True) == "obj-1"
    )
    assert refused.calls == ["find", "create", "create"]
    assert slept(seam) == [7, 7]


def test_a_quota_longer_than_the_policy_allows_fails_at_once(seam: HttpSeam) -> None:
    market = Market([RateLimited("acme", "hourly quota", retry_after=3600)])
    with pytest.raises(RateLimited, match="hourly quota"):
        create_once(seam, "job", market.create, market.find, rate_limit_refused=True)
    assert market.calls == ["find", "create"]
    assert slept(seam) == []


def test_a_failing_look_is_not_retried_here(seam: HttpSeam) -> None:
    market = Market([server_error()])
    looks: list[int] = []

    def find() -> str | None:
        looks.append(1)
        if len(looks) > 1:
            raise TransientError("acme", "GET /jobs -> HTTP 503")
        return None

    with pytest.raises(TransientError, match="GET /jobs"):
        create_once(seam, "job", market.create, find)
    assert market.calls == ["create"]
    assert slept(seam) == []


def test_errors_that_are_not_transient_are_not_retried(seam: HttpSeam) -> None:
    market = Market([NotFound("acme", "POST /jobs -> HTTP 404")])
    with pytest.raises(NotFound):
        create_once(seam, "job", market.create, market.find)
    assert market.calls == ["find", "create"]


def test_find_first_false_sends_at_once(seam: HttpSeam) -> None:
    market = Market([])
    assert create_once(seam, "job", market.create, market.find, find_first=False) == "obj-1"
    assert market.calls == ["create"]


# --- credentials ---------------------------------------------------------------------------


def test_from_env_reads_the_declared_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_URL, "http://sim.test:1/")
    monkeypatch.setenv(ENV_TOKEN, "tok-123")
    monkeypatch.setenv(ENV_TIMEOUT, "7.5")
    made = SimulatorCredentials.from_env()
    assert made.base_url == "http://sim.test:1/"
    assert made.api_token.get_secret_value() == "tok-123"
    assert made.timeout_s == 7.5
    client = made.get_client()
    assert client.seam.base_url == "http://sim.test:1"
    assert client.seam.timeout_s == 7.5
    assert client.seam.auth_headers == {"Authorization": "Bearer tok-123"}
    client.close()
    monkeypatch.delenv(ENV_TIMEOUT)
    assert SimulatorCredentials.from_env().timeout_s == 30.0


def test_from_env_names_every_missing_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_URL, raising=False)
    monkeypatch.setenv(ENV_TOKEN, "")
    with pytest.raises(RuntimeError) as caught:
        SimulatorCredentials.from_env()
    assert str(caught.value) == (
        f"simulator credentials: no credentials block named and {ENV_URL} and {ENV_TOKEN} "
        "not set in the environment"
    )


def test_from_env_names_a_bad_value_by_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_KEY, "secret-key-value")
    monkeypatch.setenv(ENV_SCHEME, "Bearer")
    with pytest.raises(RuntimeError, match=rf"^toloka credentials: {ENV_SCHEME}: ") as caught:
        TolokaCredentials.from_env()
    assert "secret-key-value" not in str(caught.value)
    monkeypatch.setenv(ENV_SCHEME, "OAuth")
    assert TolokaCredentials.from_env().auth_headers() == {
        "Authorization": "OAuth secret-key-value"
    }


def test_get_client_takes_the_test_overrides() -> None:
    sleeps: list[float] = []
    made = TolokaCredentials(api_key=SecretStr("k"), timeout_s=3.0)
    client = made.get_client(
        base_url="http://toloka.test/api/", retry=POLICY, sleep=sleeps.append, timeout_s=1.0
    )
    assert client.seam.base_url == "http://toloka.test/api"
    assert client.seam.retry is POLICY
    assert client.seam.timeout_s == 1.0
    assert client.seam.rate_limit_wait is not None  # Toloka's quota body reader
    client.seam.sleep(2.0)
    assert sleeps == [2.0]
    client.close()


# --- quarantine helpers ----------------------------------------------------------------------


class Answer(BaseModel):
    choice: int


def test_quarantined_keeps_raw_json_and_only_string_ids() -> None:
    raw = {"id": 5, "task_key": 12, "worker": "w1", "answer": {"choice": "x"}}
    made = quarantined("5", "bad answer", raw, task_key=raw["task_key"], worker_id=raw["worker"])
    assert made.task_key is None  # not a string: the record is not trusted
    assert made.worker_id == "w1"
    assert made.raw == '{"answer": {"choice": "x"}, "id": 5, "task_key": 12, "worker": "w1"}'


def test_first_error_names_the_field() -> None:
    with pytest.raises(ValidationError) as caught:
        Answer.model_validate({"choice": "left"})
    assert first_error(caught.value).startswith("choice: Input should be a valid integer")
    assert first_error(caught.value, tagged_union=True).startswith("value: ")


def test_listing_connectors_and_checking_options_does_not_import_prefect() -> None:
    """The credentials base imports Prefect; connectors import it inside `from_config` only,
    so `crowdloop connectors` and a campaign file's check stay fast."""
    code = (
        "import sys\n"
        "from crowdloop.connectors.registry import discover, validate_options\n"
        "found = discover()\n"
        "assert all(info.cls is not None for info in found.values()), found\n"
        "assert {'simulator', 'aijudge'} <= set(found), sorted(found)\n"
        "validate_options('simulator', {'page_limit': 5})\n"
        "validate_options('aijudge', {'model': 'm', 'position_swap': False})\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'prefect'"
        " or m == 'crowdloop.connectors.credentials'))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_every_credentials_block_keeps_its_form_order_and_declares_the_timeout() -> None:
    from crowdloop import blocks

    for name in blocks.__all__:
        fields = list(getattr(blocks, name).model_fields)
        # A field of the base would come first in the Prefect UI form and change the schema.
        assert fields[-1] == "timeout_s", (name, fields)
    with pytest.raises(TypeError, match="declare `timeout_s: float = TIMEOUT_S` last"):

        class Forgetful(ConnectorCredentials[HttpSeam]):
            connector_name = "forgetful"
            env_vars: ClassVar = {"token": "FORGETFUL_TOKEN"}
            token: SecretStr
