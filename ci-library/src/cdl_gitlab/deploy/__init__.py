"""The deployment pipeline: model artifacts, compression, SeldonDeployment manifests and
their rollout (serving itself lives in :mod:`cdl_gitlab.serving`).

- :mod:`cdl_gitlab.deploy.artifact` / :mod:`cdl_gitlab.deploy.package`: self-contained model
  artifacts; :mod:`cdl_gitlab.deploy.loading`: an artifact's predictor, whatever its format.
- :mod:`cdl_gitlab.deploy.compression`: int8 / TFLite quantization, compared and gated.
- :mod:`cdl_gitlab.deploy.manifest` / :mod:`cdl_gitlab.deploy.kube`: SeldonDeployment render,
  apply, rollback.
"""
