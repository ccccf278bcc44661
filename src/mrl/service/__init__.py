"""The HTTP service (`mrl serve`): FastAPI routes over a `Backend` (in-process or PostgreSQL)."""
