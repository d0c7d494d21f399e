"""Releasing model versions to the fleet: the canary judge, the arms' tallies, the
rollout plan and its state (all pure)."""
