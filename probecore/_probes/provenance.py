"""What a probe run records about its objective (defined with the contract, shared by all)."""

from probecore._contract.provenance import objective_record, versions

__all__ = ["objective_record", "versions"]
