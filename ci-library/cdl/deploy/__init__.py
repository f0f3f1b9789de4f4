"""The deployment pipeline: packaging, the Seldon wrapper's logic, local serving,
compression, SeldonDeployment manifests and their rollout.

- :mod:`cdl.deploy.artifact` / :mod:`cdl.deploy.package`: self-contained model artifacts.
- :mod:`cdl.deploy.server`: the Seldon Core v1 component the rendered wrapper subclasses.
- :mod:`cdl.deploy.local`: ``seldon-core-microservice`` on localhost (serve, stop, predict).
- :mod:`cdl.deploy.compression`: int8 / TFLite quantization, compared and gated.
- :mod:`cdl.deploy.manifest` / :mod:`cdl.deploy.kube`: SeldonDeployment render, apply, rollback.
"""
