"""Planning: pipeline declarations, placement, costs, and ``hybridfleet tune``."""
