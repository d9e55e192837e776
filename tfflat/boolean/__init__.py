"""The Boolean n = 7 system (paper §5.1): P(f) by direct sampling, and the flatness of the top functions."""
