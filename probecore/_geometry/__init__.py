"""Layer 3, geometry: measures built on the probes and the linear algebra.

``curves``, ``curve_fit`` and ``paths`` (mode connectivity), ``sharpness``
(ε-sharpness), ``subspace`` and ``pca`` (effective dimension of gradient histories),
``trajectory`` (PCA directions of a weight trajectory).
"""
