"""The simulated marketplace's HTTP API.

`/api/v1` is the marketplace a connector talks to: bearer-token auth, JSON bodies, and the
faults of `FaultConfig` injected at this edge. `/sim` is an unauthenticated admin side
(workers, hidden truth, counters, fault and clock control) for the demo summary and for
tests; a connector never calls it.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, Literal

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.routing import Match

from crowdloop.simulator import ai_judge
from crowdloop.simulator.config import FaultConfig, SimulatorConfig
from crowdloop.simulator.faults import Fault
from crowdloop.simulator.state import (
    Assignment,
    InvalidInput,
    MarketplaceState,
    Pool,
    Qualification,
    SimError,
)

API = "/api/v1"
# The simulated AI judge, an OpenAI-compatible API (crowdloop/simulator/ai_judge.py): the
# aijudge connector's base URL is `<simulator url>/openai/v1`, its key the bearer token.
OPENAI = "/openai/v1"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RewardIn(_Body):
    amount: Decimal = Field(ge=0)
    currency: str = Field(min_length=3, max_length=3)


class PoolIn(_Body):
    name: str = Field(min_length=1)
    stage: str
    instruction: str
    reward: RewardIn
    campaign_id: str
    idempotency_key: str = Field(min_length=1)
    # A qualification id: only its holders are offered the pool's tasks.
    required_qualification: str | None = None


class TasksIn(_Body):
    idempotency_key: str | None = None
    # Parsed task by task in the state layer, so a bad one is reported by its key.
    tasks: list[Any] = Field(max_length=1000)


class CloseIn(_Body):
    reason: str = ""


class DecisionIn(_Body):
    id: str
    status: Literal["accepted", "rejected"]
    comment: str = ""


class ReviewIn(_Body):
    decisions: list[DecisionIn] = Field(max_length=1000)


class BlockIn(_Body):
    # The simulator blocks account-wide whatever the scope; it is recorded, not enforced.
    scope: str = "account"
    reason: str = ""


class QualificationIn(_Body):
    name: str = Field(min_length=1, max_length=200)


class TruthIn(_Body):
    keys: list[str]


class AdvanceIn(_Body):
    seconds: float = Field(ge=0)


def _error(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


def _pool_json(pool: Pool) -> dict[str, Any]:
    return {
        "id": pool.id,
        "name": pool.name,
        "stage": pool.stage,
        "campaign_id": pool.campaign_id,
        "status": pool.status,
        "reward": {"amount": str(pool.reward), "currency": pool.currency},
        "idempotency_key": pool.idempotency_key,
        "required_qualification": pool.required_qualification,
        "created_at": pool.created_at.isoformat(),
    }


def _qualification_json(qualification: Qualification) -> dict[str, Any]:
    return {
        "id": qualification.id,
        "name": qualification.name,
        "created_at": qualification.created_at.isoformat(),
    }


def create_app(
    config: SimulatorConfig,
    token: str,
    *,
    state: MarketplaceState | None = None,
    on_change: Callable[[], None] | None = None,
) -> FastAPI:
    """The app over a new state for `config`, or over `state` (restored from a file).

    `on_change` runs after every request that can change the state (any method but GET)
    and before its response is sent: `crowdloop simulator serve` saves the state there, so
    an answered write is on disk.
    """
    state = state if state is not None else MarketplaceState(config)
    app = FastAPI(title="crowdloop simulated marketplace", docs_url=None, redoc_url=None)
    app.state.marketplace = state
    request_ids = itertools.count(1)

    def assignment_json(a: Assignment) -> dict[str, Any]:
        kind = a.task.payload.kind
        return {
            "id": a.id,
            "task_id": a.task.id,
            "task_key": a.task.key,
            "task_kind": kind,
            "worker_id": a.worker_id,
            "submitted_at": state.clock.to_datetime(a.submit_at).isoformat(),
            "answer": state.faults.answer_for(a.id, kind, a.answer),
            "review_status": a.review or "pending",
        }

    def endpoint_name(request: Request) -> str:
        for route in app.router.routes:
            match, _ = route.matches(request.scope)
            if match is Match.FULL:
                return f"{request.method} {getattr(route, 'path', request.url.path)}"
        return f"{request.method} (unknown)"

    @app.exception_handler(SimError)
    async def sim_error(_: Request, exc: SimError) -> JSONResponse:
        return _error(exc.status_code, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def bad_body(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(part) for part in first["loc"])
        return _error(422, "invalid", f"{where}: {first['msg']}")

    async def guarded(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """Auth first, then the configured faults, around the real handler."""
        supplied = request.headers.get("authorization", "")
        if not secrets.compare_digest(supplied.encode(), f"Bearer {token}".encode()):
            return _error(401, "unauthorized", "missing or invalid bearer token")
        fault = state.faults.draw(request.method)
        if fault is Fault.RATE_LIMIT:
            retry_after = f"{state.faults.config.retry_after_s:g}"
            return _error(429, "rate_limited", "too many requests", **{"retry-after": retry_after})
        if fault is Fault.SERVER_ERROR:
            return _error(500, "internal", "injected server error")
        response = await call_next(request)
        if fault is Fault.TIMEOUT:
            # The work is done but the answer is late: the client has given up by now.
            await asyncio.sleep(state.faults.config.timeout_sleep_s)
        if fault is Fault.FALSE_500 and response.status_code < 300:
            return _error(500, "internal", "injected error after the write was applied")
        return response

    @app.middleware("http")
    async def marketplace_edge(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request_id = f"sim-{next(request_ids):07d}"
        if not request.url.path.startswith((API, OPENAI)):
            response = await call_next(request)
        else:
            state.count_request(endpoint_name(request))
            response = await guarded(request, call_next)
        if on_change is not None and request.method != "GET":
            await asyncio.to_thread(on_change)
        response.headers["x-request-id"] = request_id
        return response

    # --- marketplace API ---------------------------------------------------------------

    @app.post(f"{API}/pools", status_code=201)
    def create_pool(body: PoolIn, response: Response) -> dict[str, Any]:
        pool, created = state.create_pool(
            name=body.name,
            stage=body.stage,
            instruction=body.instruction,
            reward=body.reward.amount,
            currency=body.reward.currency,
            campaign_id=body.campaign_id,
            idempotency_key=body.idempotency_key,
            required_qualification=body.required_qualification,
        )
        if not created:
            response.status_code = 200
        return _pool_json(pool)

    @app.get(f"{API}/pools")
    def find_pools(idempotency_key: str) -> dict[str, Any]:
        return {"items": [_pool_json(p) for p in state.find_pools(idempotency_key)]}

    @app.get(f"{API}/pools/{{pool_id}}")
    def get_pool(pool_id: str) -> dict[str, Any]:
        return state.pool_summary(pool_id)

    @app.post(f"{API}/pools/{{pool_id}}/tasks")
    def add_tasks(pool_id: str, body: TasksIn) -> JSONResponse:
        tasks = state.validate_tasks(body.tasks)
        added = state.add_tasks(pool_id, tasks)
        return JSONResponse(
            {"tasks": [{"id": t.id, "key": t.key, "created": created} for t, created in added]}
        )

    @app.get(f"{API}/pools/{{pool_id}}/tasks")
    def find_tasks(pool_id: str, keys: str = "") -> dict[str, Any]:
        wanted = [k for k in keys.split(",") if k]
        return {"items": [{"id": t.id, "key": t.key} for t in state.find_tasks(pool_id, wanted)]}

    @app.post(f"{API}/pools/{{pool_id}}/open")
    def open_pool(pool_id: str) -> dict[str, Any]:
        return _pool_json(state.open_pool(pool_id))

    @app.post(f"{API}/pools/{{pool_id}}/close")
    def close_pool(pool_id: str, body: CloseIn | None = None) -> dict[str, Any]:
        return _pool_json(state.close_pool(pool_id))

    @app.get(f"{API}/pools/{{pool_id}}/assignments")
    def list_assignments(
        pool_id: str, cursor: str | None = None, limit: int | None = None
    ) -> JSONResponse:
        limit = config.page_limit_default if limit is None else limit
        if not 1 <= limit <= config.page_limit_max:
            raise InvalidInput(f"limit must be between 1 and {config.page_limit_max}")
        items, next_cursor, has_more = state.list_assignments(pool_id, cursor or None, limit)
        return JSONResponse(
            {
                "items": [assignment_json(a) for a in items],
                "next_cursor": next_cursor,
                "has_more": has_more,
            }
        )

    @app.get(f"{API}/pools/{{pool_id}}/spend")
    def spend(pool_id: str) -> dict[str, Any]:
        amount, currency = state.spend(pool_id)
        return {"amount": str(amount), "currency": currency}

    @app.post(f"{API}/assignments/review")
    def review(body: ReviewIn) -> dict[str, Any]:
        changed = state.review([(d.id, d.status, d.comment) for d in body.decisions])
        return {"applied": changed, "unchanged": len(body.decisions) - changed}

    @app.post(f"{API}/workers/{{worker_id}}/block")
    def block_worker(worker_id: str, body: BlockIn) -> dict[str, Any]:
        moved = state.block_worker(worker_id, body.reason)
        return {"worker_id": worker_id, "blocked": True, "reassigned": moved}

    @app.post(f"{API}/qualifications", status_code=201)
    def create_qualification(body: QualificationIn, response: Response) -> dict[str, Any]:
        """Create by name; the same name again returns the existing one (200)."""
        qualification, created = state.create_qualification(body.name)
        if not created:
            response.status_code = 200
        return _qualification_json(qualification)

    @app.get(f"{API}/qualifications")
    def find_qualifications(name: str) -> dict[str, Any]:
        return {"items": [_qualification_json(q) for q in state.find_qualifications(name)]}

    @app.put(f"{API}/qualifications/{{qualification_id}}/workers/{{worker_id}}")
    def grant_qualification(qualification_id: str, worker_id: str) -> dict[str, Any]:
        granted, assigned = state.grant_qualification(qualification_id, worker_id)
        return {
            "qualification_id": qualification_id,
            "worker_id": worker_id,
            "granted": granted,  # false: the worker held it already
            "assigned": assigned,
        }

    # --- admin side (no auth, never used by connectors) -----------------------------------

    # --- the simulated AI judge (OpenAI-compatible) ----------------------------------------

    completion_ids = itertools.count(1)

    @app.get(f"{OPENAI}/models/{{model:path}}")
    def openai_model(model: str) -> dict[str, Any]:
        return ai_judge.model_body(model)

    @app.post(f"{OPENAI}/chat/completions")
    async def openai_chat(request: Request) -> JSONResponse:
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ai_judge.BadRequest("the body must be a JSON object")
            answer = ai_judge.completion_body(
                config.ai_judge,
                config.seed,
                body,
                f"chatcmpl-sim{config.id_prefix}{next(completion_ids):09d}",
            )
        except (ValueError, ai_judge.BadRequest) as exc:
            return _error(400, "invalid_request_error", str(exc))
        return JSONResponse(answer)

    @app.get("/sim/health")
    def health() -> dict[str, Any]:
        return {"ok": True}

    @app.get("/sim/workers")
    def workers() -> list[dict[str, Any]]:
        held = state.worker_qualifications()
        return [
            {
                "id": w.id,
                "archetype": w.archetype,
                "speed": w.speed,
                "blocked": blocked,
                "qualifications": held.get(w.id, []),
            }
            for w, blocked in state.workers()
        ]

    @app.post("/sim/truth")
    def truth(body: TruthIn) -> dict[str, Any]:
        known = state.truth(body.keys)
        return {k: known.get(k) for k in body.keys}

    @app.get("/sim/stats")
    def stats() -> dict[str, Any]:
        return state.snapshot_stats()

    @app.get("/sim/faults")
    def get_faults() -> FaultConfig:
        return state.faults.config

    @app.post("/sim/faults")
    def set_faults(body: FaultConfig) -> FaultConfig:
        state.faults.replace(body)
        return body

    @app.get("/sim/clock")
    def clock() -> dict[str, Any]:
        return {"now": state.now(), "time_scale": config.time_scale}

    @app.post("/sim/clock/advance")
    def advance(body: AdvanceIn) -> dict[str, Any]:
        return {"now": state.advance_clock(body.seconds)}

    return app
