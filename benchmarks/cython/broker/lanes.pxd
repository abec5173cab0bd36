# broker.lanes as Cython sees it in benchmarks/cython_tree.sh's 'typed' copy (issue 16's
# evaluation only: Warren is not compiled). Augments the .py, which stays plain Python.
from broker.message cimport Message, QueuedMessage

cdef class MessageLanes

cdef class _Lane:
    cdef public MessageLanes owner
    cdef public object ready
    cdef public list requeued
    cdef public Py_ssize_t cold, runs

cdef class MessageLanes:
    cdef public object max_priority
    cdef public list _lanes, _by_priority
    cdef public Py_ssize_t bytes, count
