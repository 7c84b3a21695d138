"""Models and their replicas, the choice of a replica, health and load."""

from tram.routing.registry import ModelPool, Registry, Replica

__all__ = ["ModelPool", "Registry", "Replica"]
