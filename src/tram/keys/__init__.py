"""Key administration: the rules (`service.py`) and `tram keys` (`cli.py`). The SQL is in
`store/keys.py`, checking a presented key in `auth/principal.py`."""

from tram.keys.service import KeyAdmin, expires_in_days, operator, require_administrator

__all__ = ["KeyAdmin", "expires_in_days", "operator", "require_administrator"]
