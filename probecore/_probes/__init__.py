"""Layer 2, probes: losses at many points, through one engine.

``engine`` (a plan of points evaluated in chunks, through an executor, into a store, with
progress), ``store`` (resumable Zarr runs), ``directions`` (filter-normalized and Hessian
directions), ``grids`` (lines, interpolation, planes), ``rays`` (Monte Carlo curvature),
``runs`` (stored runs read back), ``results``.
"""
