# broker.message as Cython sees it in benchmarks/cython_tree.sh's 'typed' copy (issue 16's
# evaluation only: Warren is not compiled). Augments the .py, which stays plain Python.
cdef class Message:
    cdef public object exchange, routing_key, route_bytes, props_raw, body, _headers, cc
    cdef public object body_size, timestamp, expiration, store_ref
    cdef public bint persistent

cdef class QueuedMessage:
    cdef public Message message
    cdef public object seq, priority, expires_at, delivery_count
    cdef public bint redelivered, logged_delivery
