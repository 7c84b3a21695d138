"""The per-app state object that handlers reach through the request (never a global)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from tram.api.uploads import UploadBudget
from tram.auth.principal import Authenticator
from tram.batches.runner import BatchRunner
from tram.batches.service import BatchService
from tram.batches.throttle import GatewayLoad
from tram.config import Settings, TramConfig
from tram.limits.base import Limiter
from tram.metrics import Metrics
from tram.relay.admission import Admission
from tram.relay.media import MediaVetting
from tram.relay.service import ModelService
from tram.routing.registry import Registry
from tram.store.db import Database
from tram.store.files import FileStore
from tram.store.keys import KeyStore
from tram.store.stored_responses import ResponseStore
from tram.store.usage import UsageWriter
from tram.transport.upstream import UpstreamClient
from tram.vision.fetch import ImageFetcher

__all__ = ["AppState", "state_of"]


@dataclass
class AppState:
    settings: Settings
    config: TramConfig
    registry: Registry
    upstream: UpstreamClient
    fetcher: ImageFetcher
    media: MediaVetting
    models: ModelService
    responses: ResponseStore
    authenticator: Authenticator
    metrics: Metrics
    database: Database
    keys: KeyStore
    usage: UsageWriter
    limiter: Limiter
    uploads: UploadBudget
    file_uploads: UploadBudget
    admission: Admission
    files: FileStore
    batches: BatchService
    batch_runner: BatchRunner
    batch_load: GatewayLoad

    async def aclose(self) -> None:
        self.media.close()
        await self.upstream.aclose()
        await self.fetcher.aclose()
        await self.usage.close()
        await self.limiter.aclose()
        await self.database.aclose()


def state_of(request: Request) -> AppState:
    state: AppState = request.app.state.tram
    return state
