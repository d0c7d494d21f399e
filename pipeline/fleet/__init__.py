"""Running a fleet: the ``fleet up`` launcher and its processes, one long-lived
site, heartbeats and ``fleet status``."""
