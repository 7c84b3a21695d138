"""Files and batches as OpenAI defines them: the body of `POST /v1/batches` and the objects the
Files and Batch APIs answer with (File, Batch, their lists), for validation and the OpenAPI
document. `BATCH_ENDPOINTS` names the endpoints a batch may run and the route of each."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr

__all__ = ["BATCH_ENDPOINTS", "BatchCreate", "BatchList", "BatchObject", "FileDeleted",
           "FileList", "FileObject", "FilePurpose"]

# Endpoint of a batch → the model route each of its lines takes.
BATCH_ENDPOINTS = {"/v1/chat/completions": "chat", "/v1/completions": "completions",
                   "/v1/embeddings": "embeddings", "/v1/responses": "responses"}

FilePurpose = Literal["batch", "batch_output"]

MetadataKey = Annotated[StrictStr, Field(max_length=64)]
MetadataValue = Annotated[StrictStr, Field(max_length=512)]


class BatchCreate(BaseModel):
    """POST /v1/batches. Unknown fields (OpenAI's `output_expires_after`) are accepted and
    not used: files are kept until deleted."""

    model_config = ConfigDict(extra="allow")

    input_file_id: Annotated[StrictStr, Field(min_length=1, max_length=40)]
    endpoint: Literal["/v1/chat/completions", "/v1/completions", "/v1/embeddings",
                      "/v1/responses"]
    completion_window: Literal["24h"]
    metadata: Annotated[dict[MetadataKey, MetadataValue], Field(max_length=16)] | None = None


class FileObject(BaseModel):
    id: str
    object: Literal["file"]
    bytes: int
    created_at: int
    filename: str
    purpose: FilePurpose
    status: Literal["uploaded", "processed", "error"]
    status_details: str | None = None
    expires_at: int | None = None


class FileList(BaseModel):
    object: Literal["list"]
    data: list[FileObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"]
    deleted: bool


class BatchRequestCounts(BaseModel):
    total: int
    completed: int
    failed: int


class BatchError(BaseModel):
    code: str | None = None
    message: str | None = None
    param: str | None = None
    line: int | None = None


class BatchErrors(BaseModel):
    object: Literal["list"]
    data: list[BatchError]


class BatchObject(BaseModel):
    id: str
    object: Literal["batch"]
    endpoint: str
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str
    status: Literal["validating", "failed", "in_progress", "finalizing", "completed",
                    "expired", "cancelling", "cancelled"]
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: BatchRequestCounts
    metadata: dict[str, str] | None = None
    model: str | None = None
    usage: dict[str, Any] | None = None


class BatchList(BaseModel):
    object: Literal["list"]
    data: list[BatchObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool
