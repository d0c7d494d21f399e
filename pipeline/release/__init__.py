"""Releasing models: signed bundles, the registry, following the desired version,
the canary judge and the rollout controller."""
