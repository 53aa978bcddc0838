"""Developer and operator tooling that is not part of the request path."""
