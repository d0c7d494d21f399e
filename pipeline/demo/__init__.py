"""The embedded stack (``hybridfleet stack``) and its summary."""
