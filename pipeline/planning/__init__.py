"""Planning a deployment before it runs. So far: choosing the edge's confidence
threshold for a target (``curves``, ``retrain``, ``sizes``, ``tomledit``, ``tune``)."""
