"""The data pipeline's steps: ``collect``, ``split``, ``validate`` (the ``/pfs`` step of the
validate pipelines) and ``pipeline`` (all of them, then labels)."""
