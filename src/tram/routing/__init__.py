"""Models and their replicas, the choice of a replica, and the HTTP client to engines."""

from tram.routing.registry import ModelPool, Registry, Replica
from tram.routing.upstream import UpstreamClient

__all__ = ["ModelPool", "Registry", "Replica", "UpstreamClient"]
