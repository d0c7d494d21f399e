"""An operator's tools: ``infer``, ``tail`` and dead letters."""
