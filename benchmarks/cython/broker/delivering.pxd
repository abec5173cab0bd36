# broker.delivering as Cython sees it in benchmarks/cython_tree.sh's 'typed' copy (issue 16's
# evaluation only: Warren is not compiled). Augments the .py, which stays plain Python.
from broker.message cimport Message, QueuedMessage
from broker.consumer cimport Consumer
from protocol.codec cimport DeliverEncoder, DeliverShape

cdef class Deliveries:
    cdef public object channel, connection, number, vhost, transaction, _held_cancels
    cdef public object tags, stats, reply_consumer_tag, reply_key
    cdef public dict consumers
    cdef public DeliverEncoder encoder
    cdef public Py_ssize_t default_prefetch, global_prefetch, global_unacked
