"""A thin typed client for Prolific's API v1: one method per endpoint, nothing else.

Every call goes through `HttpSeam` (auth, retries, error mapping). Calls that create an
object Prolific does not dedupe (datasets, AI Task Builder batches, studies, participant
groups) and the bulk approval are sent with `retry=False`: the connector reconciles them
by looking the object up. Reads, transitions (documented idempotent), datapoint appends
(an identical record is not written twice) and group membership (members already in the
group are ignored) are retried.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, ValidationError

from crowdloop.connectors._http import HttpSeam
from crowdloop.connectors.errors import GarbledResponse
from crowdloop.connectors.prolific.models import (
    AppendResult,
    BatchCreate,
    BatchList,
    BatchStatusBody,
    BulkApprove,
    DatasetCreate,
    GroupCreate,
    GroupMembers,
    ImportJob,
    Paged,
    ResponseList,
    SetupRequest,
    StudyCreate,
    StudyPatch,
    SubmissionTransition,
    SyncJob,
    Transition,
    UploadUrl,
    WireBatch,
    WireDataset,
    WireGroup,
    WireProject,
    WireStudy,
    WireWorkspace,
    WorkspaceBalance,
)

API = "/api/v1"
DC = f"{API}/data-collection"
ModelT = TypeVar("ModelT", bound=BaseModel)
# Bound on list pages followed for one lookup, so a server that keeps sending `next`
# cannot loop us forever.
MAX_PAGES = 1000


class ProlificClient:
    def __init__(self, seam: HttpSeam) -> None:
        self.seam = seam

    def close(self) -> None:
        self.seam.close()

    def sleep(self, seconds: float) -> None:
        """The seam's sleep (injected in tests), for reconcile and polling waits."""
        self.seam.sleep(seconds)

    def _body(self, model: BaseModel) -> Any:
        return model.model_dump(mode="json", by_alias=True, exclude_none=True)

    def _pages(self, path: str, params: Mapping[str, Any]) -> Iterator[Paged]:
        """Follow `_links.next` of a list endpoint, page by page."""
        query: dict[str, Any] = dict(params)
        for _ in range(MAX_PAGES):
            page = self.seam.parse(Paged, self.seam.request("GET", path, params=query))
            yield page
            href = page.next_href
            if not href or not page.results:
                return
            query = dict(parse_qsl(urlsplit(href).query))
        raise GarbledResponse(self.seam.connector, f"GET {path}: more than {MAX_PAGES} pages")

    # --- AI Task Builder datasets --------------------------------------------------------

    def create_dataset(self, body: DatasetCreate) -> WireDataset:
        response = self.seam.request("POST", f"{DC}/datasets", json=self._body(body), retry=False)
        return self.seam.parse(WireDataset, response)

    def get_dataset(self, dataset_id: str) -> WireDataset:
        """A V4 dataset with its `imports` (docs: get-task-builder-dataset)."""
        return self.seam.parse(WireDataset, self.seam.request("GET", f"{DC}/datasets/{dataset_id}"))

    def upload_url(self, dataset_id: str, filename: str) -> UploadUrl:
        """Create an import job and a presigned URL for its file (docs: uploading-data)."""
        response = self.seam.request("GET", f"{DC}/datasets/{dataset_id}/upload-url/{filename}")
        return self.seam.parse(UploadUrl, response)

    def put_upload(self, upload: UploadUrl, content: bytes) -> None:
        """PUT the file to the presigned URL: another host, so no API token is sent
        (docs: "No authentication headers are required for the S3 request")."""
        self.seam.request(
            upload.http_method or "PUT",
            upload.upload_url,
            content=content,
            headers={"Content-Type": upload.content_type or "application/x-ndjson"},
            send_auth=False,
        )

    def import_status(self, dataset_id: str, import_id: str) -> ImportJob:
        response = self.seam.request("GET", f"{DC}/datasets/{dataset_id}/imports/{import_id}")
        return self.seam.parse(ImportJob, response)

    def append_datapoints(
        self, dataset_id: str, records: Sequence[Mapping[str, Any]]
    ) -> AppendResult:
        """JSONL body, at most 1000 records (the documented per-request limit)."""
        payload = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in records)
        response = self.seam.request(
            "POST",
            f"{DC}/datasets/{dataset_id}/datapoints",
            content=payload.encode(),
            headers={"Content-Type": "application/x-ndjson"},
        )
        return self.seam.parse(AppendResult, response)

    # --- AI Task Builder batches ---------------------------------------------------------

    def create_batch(self, body: BatchCreate) -> WireBatch:
        response = self.seam.request("POST", f"{DC}/batches", json=self._body(body), retry=False)
        return self.seam.parse(WireBatch, response)

    def list_batches(self, workspace_id: str) -> list[WireBatch]:
        # With the trailing slash, as the CLI requests it (client/client.go
        # GetAITaskBuilderBatches); httpx does not follow a redirect from the bare path.
        response = self.seam.request("GET", f"{DC}/batches/", params={"workspace_id": workspace_id})
        return self.seam.parse(BatchList, response).results

    def get_batch(self, batch_id: str) -> WireBatch:
        return self.seam.parse(WireBatch, self.seam.request("GET", f"{DC}/batches/{batch_id}"))

    def batch_status(self, batch_id: str) -> str:
        response = self.seam.request("GET", f"{DC}/batches/{batch_id}/status")
        return self.seam.parse(BatchStatusBody, response).status

    def setup_batch(self, batch_id: str, body: SetupRequest) -> None:
        self.seam.request("POST", f"{DC}/batches/{batch_id}/setup", json=self._body(body))

    def sync_batch(self, batch_id: str) -> SyncJob:
        return self.seam.parse(SyncJob, self.seam.request("POST", f"{DC}/batches/{batch_id}/sync"))

    def sync_status(self, batch_id: str, sync_id: str) -> SyncJob:
        response = self.seam.request("GET", f"{DC}/batches/{batch_id}/syncs/{sync_id}")
        return self.seam.parse(SyncJob, response)

    def batch_responses(self, batch_id: str) -> ResponseList:
        response = self.seam.request("GET", f"{DC}/batches/{batch_id}/responses")
        return self.seam.parse(ResponseList, response)

    # --- studies -------------------------------------------------------------------------

    def create_study(self, body: StudyCreate) -> WireStudy:
        response = self.seam.request("POST", f"{API}/studies/", json=self._body(body), retry=False)
        return self.seam.parse(WireStudy, response)

    def iter_studies(self, project_id: str | None) -> Iterator[WireStudy]:
        path = f"{API}/projects/{project_id}/studies/" if project_id else f"{API}/studies/"
        for page in self._pages(path, {}):
            for raw in page.results:
                yield self._validate(WireStudy, raw, path)

    def get_study(self, study_id: str) -> WireStudy:
        return self.seam.parse(WireStudy, self.seam.request("GET", f"{API}/studies/{study_id}/"))

    def update_study(self, study_id: str, body: StudyPatch) -> WireStudy:
        response = self.seam.request("PATCH", f"{API}/studies/{study_id}/", json=self._body(body))
        return self.seam.parse(WireStudy, response)

    def transition_study(self, study_id: str, action: str) -> None:
        self.seam.request(
            "POST",
            f"{API}/studies/{study_id}/transition/",
            json=self._body(Transition(action=action)),
        )

    # --- submissions ---------------------------------------------------------------------

    def submissions_page(self, study_id: str, *, offset: int, limit: int) -> Paged:
        """One page in start order (new submissions only ever land at the end)."""
        response = self.seam.request(
            "GET",
            f"{API}/studies/{study_id}/submissions/",
            params={"ordering": "started_at", "offset": offset, "limit": limit},
        )
        return self.seam.parse(Paged, response)

    def transition_submission(self, submission_id: str, body: SubmissionTransition) -> None:
        self.seam.request(
            "POST", f"{API}/submissions/{submission_id}/transition/", json=self._body(body)
        )

    def bulk_approve(self, body: BulkApprove) -> None:
        self.seam.request(
            "POST", f"{API}/submissions/bulk-approve/", json=self._body(body), retry=False
        )

    # --- account (read-only; the first-contact check) ------------------------------------

    def get_me(self) -> dict[str, Any]:
        """GET /api/v1/users/me (the CLI's `GetMe`): proves the token."""
        response = self.seam.request("GET", f"{API}/users/me")
        body = response.json() if response.content else {}
        return body if isinstance(body, dict) else {}

    def get_workspace(self, workspace_id: str) -> WireWorkspace:
        response = self.seam.request("GET", f"{API}/workspaces/{workspace_id}/")
        return self.seam.parse(WireWorkspace, response)

    def workspace_balance(self, workspace_id: str) -> WorkspaceBalance:
        response = self.seam.request("GET", f"{API}/workspaces/{workspace_id}/balance/")
        return self.seam.parse(WorkspaceBalance, response)

    def get_project(self, project_id: str) -> WireProject:
        """GET /api/v1/projects/{id}/ (the CLI's `GetProject`)."""
        return self.seam.parse(
            WireProject, self.seam.request("GET", f"{API}/projects/{project_id}/")
        )

    # --- participant groups --------------------------------------------------------------

    def iter_groups(self, workspace_id: str) -> Iterator[WireGroup]:
        path = f"{API}/participant-groups/"
        for page in self._pages(path, {"workspace_id": workspace_id}):
            for raw in page.results:
                yield self._validate(WireGroup, raw, path)

    def create_group(self, body: GroupCreate) -> WireGroup:
        response = self.seam.request(
            "POST", f"{API}/participant-groups/", json=self._body(body), retry=False
        )
        return self.seam.parse(WireGroup, response)

    def add_to_group(self, group_id: str, participant_ids: Sequence[str]) -> None:
        self.seam.request(
            "POST",
            f"{API}/participant-groups/{group_id}/participants/",
            json=self._body(GroupMembers(participant_ids=list(participant_ids))),
        )

    def _validate(self, model: type[ModelT], raw: Any, path: str) -> ModelT:
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            raise GarbledResponse(
                self.seam.connector,
                f"GET {path}: unreadable {model.__name__}: {exc.errors()[0]['msg']}",
            ) from exc
