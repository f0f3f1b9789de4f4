"""The data pipeline: versioned ML Data, pipeline specs and their local runner, labels.

Modules: ``store`` (the ``DataStore`` interface and ``open_store``), ``local_store`` and
``pachyderm_store`` (its backends), ``spec`` (Pachyderm pipeline specs and their strict
linter), ``runner`` (executes specs locally), ``collect`` / ``split`` / ``validate`` (the
steps), ``labels`` (the labels table), ``dataset`` (what training reads).
"""
