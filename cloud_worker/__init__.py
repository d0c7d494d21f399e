"""hybridfleet cloud_worker."""
