"""The data pipeline: versioned ML Data, its steps and formats, Pachyderm specs, labels.

- ``steps``: ``collect``, ``split``, ``validate`` (the ``/pfs`` step) and ``pipeline`` (all).
- ``formats``: the raw-data shapes of ``data.format`` (``archive``, ``idx``), chosen once.
- ``stores``: the ``DataStore`` interface and its local and Pachyderm backends.
- ``pachyderm``: pipeline specs and their linter, the ``/pfs`` contract, the local runner,
  pipeline creation on Pachyderm.
- ``commits`` (commit, provenance and data-version types), ``names`` (repo names),
  ``sources`` (mirror or download), ``labels`` (the labels table), ``labeling`` (Label Studio
  tasks, imports and the store-labels step), ``dataset`` (what training reads).
"""
