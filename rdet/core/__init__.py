"""The bottom layer: user errors, atomic writes, output locks, result records, safe unpickling and
the confusion-matrix metrics, and the checkpoint-then-stop request a cluster signal leaves for the
trainer. Imports nothing else from rdet."""
