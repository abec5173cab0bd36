# broker.publishing as Cython sees it in benchmarks/cython_tree.sh's 'typed' copy (issue 16's
# evaluation only: Warren is not compiled). Augments the .py, which stays plain Python.
from broker.message cimport Message, QueuedMessage
