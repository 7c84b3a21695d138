"""API keys: parsing the Authorization header and resolving a key to a Principal."""

from tram.auth.principal import Authenticator, Principal, bearer_token

__all__ = ["Authenticator", "Principal", "bearer_token"]
