"""hybridfleet pipeline."""
