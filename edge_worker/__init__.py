"""The edge worker: batches camera frames, runs the small model, answers or escalates."""
