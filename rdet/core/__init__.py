"""The bottom layer: user errors, atomic writes, output locks, result records, safe unpickling and
the confusion-matrix metrics. Imports nothing else from rdet."""
