#!/bin/sh
# Issue 16's Cython evaluation, repeatable: a copy of a commit of Warren whose hot modules are
# compiled by Cython 3 as they are (plain .py files, no .pyx), to compare its CPU per message
# with the pure-Python copy. Warren is not compiled otherwise: this is a benchmark aid only.
#
#   pip install 'cython>=3'                          # plus a C compiler and Python's headers
#   benchmarks/cython_tree.sh pure     /tmp/w-pure     # the copy as it is
#   benchmarks/cython_tree.sh compiled /tmp/w-comp     # hot modules compiled in place
#   benchmarks/cython_tree.sh typed    /tmp/w-typed    # same, with benchmarks/cython/**/*.pxd
#   python3 /tmp/w-pure/benchmarks/frame_cpu.py --tree /tmp/w-pure --tree /tmp/w-comp --repeat 4
#   python3 /tmp/w-comp/benchmarks/profile.py --no-profile --repeat 5    # alternate the copies
#
# A third argument names the commit (default HEAD). benchmarks/bin (amqperf) is copied along.
# The .pxd files make a few classes cdef classes (C fields): they follow the classes as they
# were at the evaluation; a class that gained an attribute since fails at run time there.
set -eu

mode=${1:-}
dest=${2:-}
commit=${3:-HEAD}
case "$mode" in pure|compiled|typed) ;; *)
    echo "usage: $0 pure|compiled|typed DEST [COMMIT]" >&2; exit 2 ;;
esac
[ -n "$dest" ] || { echo "usage: $0 pure|compiled|typed DEST [COMMIT]" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")

rm -rf "$dest"
mkdir -p "$dest"
git -C "$repo" archive "$commit" | tar -x -C "$dest"
if [ -d "$here/bin" ]; then
    mkdir -p "$dest/benchmarks/bin" && cp "$here"/bin/* "$dest/benchmarks/bin/"
fi
[ "$mode" = pure ] && exit 0

modules="protocol/codec.py protocol/content.py protocol/deliverytags.py
broker/connection.py broker/channel.py broker/publishing.py broker/vhost.py
broker/exchanges/base.py broker/exchanges/delayed.py broker/exchanges/direct.py
broker/exchanges/fanout.py broker/exchanges/headers.py broker/exchanges/topic.py
broker/queue.py broker/lanes.py broker/coldrun.py broker/consumer.py broker/delivering.py
broker/transport.py broker/message.py"
if [ "$mode" = typed ]; then
    (cd "$here/cython" && find . -name '*.pxd' -exec cp --parents {} "$dest/" \;)
fi
cd "$dest"
# shellcheck disable=SC2086 # the module list is split on purpose
cythonize -i -3 -j "${JOBS:-2}" $modules >cythonize.log 2>&1 \
    || { tail -30 cythonize.log >&2; exit 1; }
echo "$dest: $(find broker protocol -name '*.so' | wc -l) compiled modules (log: cythonize.log)"
