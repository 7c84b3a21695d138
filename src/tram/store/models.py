"""Tables. Keys are stored as SHA-256 digests only; the clear key is shown once at creation."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Base", "Batch", "BatchLine", "StoredFile", "StoredResponse", "StoredResponseTotal",
           "UsageEvent", "VirtualKey"]


class Base(DeclarativeBase):
    pass


class VirtualKey(Base):
    __tablename__ = "virtual_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    key_hint: Mapped[str] = mapped_column(String(32))  # "sk-tram-ab…yz": enough to recognise it
    name: Mapped[str] = mapped_column(String(200))
    owner: Mapped[str | None] = mapped_column(String(200))
    allowed_models: Mapped[list[str] | None] = mapped_column(JSON)
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    rpm: Mapped[int | None] = mapped_column(Integer)
    tpm: Mapped[int | None] = mapped_column(Integer)
    max_concurrency: Mapped[int | None] = mapped_column(Integer)
    max_total_tokens: Mapped[int | None] = mapped_column(BigInteger)
    budget_tokens: Mapped[int | None] = mapped_column(BigInteger)
    budget_period: Mapped[str | None] = mapped_column(String(8))
    # May use the admin API (keys, usage, reload, metrics) like the master key.
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The fair queue (sharing/): "interactive", "batch" or a number as text; its weight.
    priority: Mapped[str | None] = mapped_column(String(16))
    weight: Mapped[float | None] = mapped_column(Float)


class UsageEvent(Base):
    """One chat request: who, which model, how many tokens, how long, how it ended.
    Never prompt or completion text, image data or keys."""

    __tablename__ = "usage_events"
    __table_args__ = (Index("ix_usage_key_ts", "key_id", "ts"),
                      Index("ix_usage_model_ts", "model", "ts"),
                      Index("ux_usage_event_id", "event_id", unique=True))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str | None] = mapped_column(String(32))
    ts: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    request_id: Mapped[str] = mapped_column(String(128))
    key_id: Mapped[str | None] = mapped_column(String(40))
    model: Mapped[str | None] = mapped_column(String(200))
    served_model: Mapped[str | None] = mapped_column(String(300))
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    cached_tokens: Mapped[int | None] = mapped_column(Integer)
    images: Mapped[int] = mapped_column(Integer, default=0)
    image_pixels: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    stream: Mapped[bool | None] = mapped_column(Boolean)
    latency_ms: Mapped[float] = mapped_column(Float)
    first_byte_ms: Mapped[float | None] = mapped_column(Float)
    status: Mapped[int] = mapped_column(Integer)
    error_code: Mapped[str | None] = mapped_column(String(64))
    client_disconnected: Mapped[bool] = mapped_column(Boolean, default=False)
    # The engine never reported the final usage: the token figures are the gateway's count.
    tokens_estimated: Mapped[bool] = mapped_column(Boolean, default=False,
                                                   server_default=false())
    # chat, completions, embeddings, responses, messages, rerank, score, tokenize, …
    route: Mapped[str] = mapped_column(String(32), default="chat", server_default="chat")


class StoredResponse(Base):
    """A /v1/responses answer kept for `previous_response_id` and GET: the request's own input
    items and the answer (JSON text), visible to the key that made it only."""

    __tablename__ = "stored_responses"
    __table_args__ = (Index("ix_stored_responses_key_created", "key_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(40))
    model: Mapped[str] = mapped_column(String(200))
    previous_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    size_bytes: Mapped[int] = mapped_column(Integer)
    input_items: Mapped[str] = mapped_column(Text)
    response: Mapped[str] = mapped_column(Text)


class StoredResponseTotal(Base):
    """The bytes (`size_bytes`) of each key's stored responses, kept in the transactions that
    store and delete them: the per-key cap is checked against it without summing the rows."""

    __tablename__ = "stored_response_totals"

    key_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)


class StoredFile(Base):
    """A file of `/v1/files`: a batch's input as uploaded, or the output and error files the
    gateway writes (`purpose` batch_output). In the database, so every gateway process and host
    sees it; visible to the key that owns it only."""

    __tablename__ = "files"
    __table_args__ = (Index("ix_files_key_created", "key_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(40))
    filename: Mapped[str] = mapped_column(String(255))
    purpose: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column("bytes", BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    content: Mapped[bytes] = mapped_column(LargeBinary)


class Batch(Base):
    """A batch of `/v1/batches`: what was asked and where it stands. Its counts are read from
    its lines; its output and error files are written when its last line is done."""

    __tablename__ = "batches"
    __table_args__ = (Index("ix_batches_key_created", "key_id", "created_at"),
                      Index("ix_batches_status", "status"))

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(40))
    endpoint: Mapped[str] = mapped_column(String(64))
    input_file_id: Mapped[str] = mapped_column(String(40))
    completion_window: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16))
    model: Mapped[str | None] = mapped_column(String(200))
    total: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    in_progress_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finalizing_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    failed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    expired_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    cancelling_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    output_file_id: Mapped[str | None] = mapped_column(String(40))
    error_file_id: Mapped[str | None] = mapped_column(String(40))
    errors: Mapped[str | None] = mapped_column(Text)  # JSON: the batch's `errors.data`
    batch_metadata: Mapped[str | None] = mapped_column("metadata", Text)  # JSON


class BatchLine(Base):
    """One request of a batch. `state`: pending → running (claimed by a gateway process until
    `lease_until`, epoch seconds) → succeeded or failed, with its output line (`result`)
    written in the same transaction; or cancelled / expired without running. `not_before`
    holds a line refused for a passing reason (epoch seconds)."""

    __tablename__ = "batch_lines"
    __table_args__ = (Index("ux_batch_lines_line", "batch_id", "line", unique=True),
                      Index("ix_batch_lines_state", "state", "model"),
                      Index("ix_batch_lines_claim", "model", "state", "id"),
                      Index("ix_batch_lines_batch_state", "batch_id", "state"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(String(64))
    line: Mapped[int] = mapped_column(Integer)  # 1-based, in the input file
    custom_id: Mapped[str | None] = mapped_column(Text)
    route: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(200))
    body: Mapped[str | None] = mapped_column(Text)  # JSON; None for a malformed line
    state: Mapped[str] = mapped_column(String(16))
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[float | None] = mapped_column(Float)
    not_before: Mapped[float | None] = mapped_column(Float)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[str | None] = mapped_column(Text)  # the output or error file's line
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
