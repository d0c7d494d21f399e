"""Random-weight models in the layouts common trainers export (see build.py)."""
