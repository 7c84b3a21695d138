"""Forwarding a model route's request to an engine and relaying its answer (JSON or SSE) to
the client: `service.ModelService`, one path for every route of the route table."""

__all__: list[str] = []
