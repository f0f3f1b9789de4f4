"""Pachyderm pipelines: specs and their strict linter (``spec``), the ``/pfs`` contract steps
see (``pfs``), the local runner of specs (``runner``) and their creation on Pachyderm
(``create_pipelines``)."""
