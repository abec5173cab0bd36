# protocol.codec as Cython sees it in benchmarks/cython_tree.sh's 'typed' copy (issue 16's
# evaluation only: Warren is not compiled). Augments the .py, which stays plain Python.
cdef class FrameReader:
    cdef public object _pending, frame_max, error
    cdef public bint stalled

cdef class Publish:
    cdef public object exchange, routing_key, route_bytes
    cdef public bint mandatory, immediate

cdef class Ack:
    cdef public object delivery_tag
    cdef public bint multiple

cdef class DeliverShape:
    cdef public object head, tail, after, frame_max, size

cdef class DeliverEncoder:
    cdef public object channel, limit, _shapes
