"""The model pipeline: Determined trials run off-cluster or on a cluster, HP search,
registration with lineage, the predictor used by serving and the evaluation gate.

Heavy frameworks (torch, tensorflow, determined) are imported only by the modules that need them.
"""
