"""The bottom layer: user errors, atomic writes, output locks, result records, safe unpickling and
the confusion-matrix metrics, the checkpoint-then-stop request a cluster signal leaves for the
trainer, and the garbage collector's policy for a command's own process. Imports nothing else
from rdet."""
