"""Golden messages of the wire contract in both forms; ``make.py`` writes them."""
