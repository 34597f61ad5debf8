"""Layer 0, the contract: the Objective protocol, layouts, argument checks, errors, result storage.

Everything above builds on this layer; it imports nothing else from probecore. Backend
authors get its public part from :mod:`probecore.backend`.
"""
