#!/bin/sh
# Build the amqperf load generator (a small C client on rabbitmq-c) into benchmarks/bin/amqperf,
# and benchmarks/confirmlat.c (publisher-confirm latency, used by persistent.py) next to it.
#
# The source is not part of this repository: it lives next to it, at ../shared/tools/amqperf.c
# (override with AMQPERF_SRC=/path/to/amqperf.c). The binary goes to benchmarks/bin/, which is
# gitignored. Needs a C compiler and rabbitmq-c's headers (Debian/Ubuntu: librabbitmq-dev).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
src=${AMQPERF_SRC:-$repo/../shared/tools/amqperf.c}
out=$here/bin/amqperf
cc=${CC:-cc}

if [ ! -f "$src" ]; then
    echo "build_amqperf: source not found: $src" >&2
    echo "  amqperf.c is kept outside the repo (shared/tools/amqperf.c next to the checkout)." >&2
    echo "  Put it there, or run: AMQPERF_SRC=/path/to/amqperf.c $0" >&2
    exit 1
fi

if ! command -v "$cc" >/dev/null 2>&1; then
    echo "build_amqperf: no C compiler ($cc). Install one: apt-get install -y gcc" >&2
    exit 1
fi

# rabbitmq-c headers: prefer pkg-config, else check the usual include path.
if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists librabbitmq; then
    cflags=$(pkg-config --cflags librabbitmq)
    libs=$(pkg-config --libs librabbitmq)
elif [ -f /usr/include/amqp.h ] || [ -f /usr/local/include/amqp.h ]; then
    cflags=""
    libs="-lrabbitmq"
else
    echo "build_amqperf: rabbitmq-c (amqp.h) not found." >&2
    echo "  Install it: apt-get install -y librabbitmq-dev   (Fedora: librabbitmq-devel)" >&2
    exit 1
fi

mkdir -p "$here/bin"
# shellcheck disable=SC2086  # cflags/libs are word lists on purpose
"$cc" -O2 -Wall -o "$out" "$src" $cflags $libs
echo "built $out"
# shellcheck disable=SC2086
"$cc" -O2 -Wall -o "$here/bin/confirmlat" "$here/confirmlat.c" $cflags $libs
echo "built $here/bin/confirmlat"
# shellcheck disable=SC2086
"$cc" -O2 -Wall -o "$here/bin/streamcon" "$here/streamcon.c" $cflags $libs
echo "built $here/bin/streamcon"
