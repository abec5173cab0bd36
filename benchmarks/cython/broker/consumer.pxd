# broker.consumer as Cython sees it in benchmarks/cython_tree.sh's 'typed' copy (issue 16's
# evaluation only: Warren is not compiled). Augments the .py, which stays plain Python.
from broker.message cimport Message, QueuedMessage

cdef class Consumer:
    cdef public object target, queue, tag, tag_bytes, arguments, priority
    cdef public bint no_ack, exclusive
    cdef public Py_ssize_t prefetch, unacked

cdef class _PriorityGroup:
    cdef public object priority
    cdef public list consumers

cdef class ConsumerLine:
    cdef public bint single_active
    cdef public list consumers, _groups
    cdef public object _active
