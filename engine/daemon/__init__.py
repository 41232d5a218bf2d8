"""The running daemon: the APScheduler ticker, the HTTP API (Starlette on uvicorn), hot
reload (watchfiles), Prometheus metrics and the operator log. Nothing else in the
engine imports these libraries."""
