# etcd for docker/compose.cluster.yaml: Debian's etcd-server (etcd 3.4) on the same Debian base
# as Warren's offline image (docker/build-base-image.sh makes warren-base:bookworm), or a slim
# Debian from a registry.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends etcd-server \
    && rm -rf /var/lib/apt/lists/*
VOLUME /var/lib/etcd
EXPOSE 2379
CMD ["etcd", "--name", "etcd", "--data-dir", "/var/lib/etcd", \
     "--listen-client-urls", "http://0.0.0.0:2379", "--advertise-client-urls", "http://etcd:2379", \
     "--listen-peer-urls", "http://127.0.0.1:2380", \
     "--initial-advertise-peer-urls", "http://127.0.0.1:2380", \
     "--initial-cluster", "etcd=http://127.0.0.1:2380"]
