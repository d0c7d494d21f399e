"""Tracking: which box of a camera's frame is which thing (``tracker``), and asking the
cloud about a tracked text line once, reusing its reading after (``escalation``)."""
