"""Data budget: bytes measured per station and layer, caps and cycles, and the policy."""
