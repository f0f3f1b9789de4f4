"""Serving a packaged model: what runs inside the model server and the local server itself.

- :mod:`cdl_gitlab.serving.server`: the Seldon Core v1 component the rendered wrapper
  subclasses (load, predict, metrics, scoring data, feedback).
- :mod:`cdl_gitlab.serving.guard`: the HTTP guard in front of Seldon's Flask app (size,
  depth, encoding, media type, method: a 4xx with a reason before anything is decoded).
- :mod:`cdl_gitlab.serving.validation`: request validation (every bad input is a 4xx with a
  reason).
- :mod:`cdl_gitlab.serving.local_server`: ``seldon-core-microservice`` on localhost (serve,
  stop, predict).

Per-item input statistics come from :mod:`cdl_gitlab.features.input_stats` (shared with the
reference statistics of monitoring); scoring records go through :mod:`cdl_gitlab.scoring`.
"""
