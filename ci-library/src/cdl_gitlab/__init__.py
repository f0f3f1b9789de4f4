"""CDL: the Python package every CDL CI job runs.

The package version is the version of the CI component library: a project that
includes the components at ``@X.Y.Z`` runs ``cdl`` X.Y.Z.
"""

__version__ = "0.2.0"
