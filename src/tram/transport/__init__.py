"""How the gateway talks to what is behind it: its HTTP/1.1 client for engines (`http1`, and
`upstream`, which maps transport failures to Trạm's errors), its Redis client (`resp`), and the
timing primitive every deadline on those paths shares (`deadlines`). Nothing here knows about
routes, keys or models."""

__all__: list[str] = []
