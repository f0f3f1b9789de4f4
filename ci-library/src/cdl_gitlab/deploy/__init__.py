"""The deployment pipeline: packaging, the Seldon wrapper's logic, local serving,
compression, SeldonDeployment manifests and their rollout.

- :mod:`cdl_gitlab.deploy.artifact` / :mod:`cdl_gitlab.deploy.package`: self-contained model
  artifacts.
- :mod:`cdl_gitlab.deploy.server`: the Seldon Core v1 component the rendered wrapper subclasses.
- :mod:`cdl_gitlab.deploy.local`: ``seldon-core-microservice`` on localhost (serve, stop, predict).
- :mod:`cdl_gitlab.deploy.compression`: int8 / TFLite quantization, compared and gated.
- :mod:`cdl_gitlab.deploy.manifest` / :mod:`cdl_gitlab.deploy.kube`: SeldonDeployment render,
  apply, rollback.
"""
