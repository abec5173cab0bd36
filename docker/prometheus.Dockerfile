# Prometheus from Debian's `prometheus` package (2.42 on bookworm) for machines that reach a
# Debian mirror but no registry: docker/compose.local.yaml builds it in place of
# prom/prometheus. Same command-line interface as the official image (entrypoint prometheus,
# data in /prometheus), so the compose files' `command:` lines work unchanged.
ARG BASE_IMAGE=warren-base:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends prometheus \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /prometheus && chown prometheus:prometheus /prometheus
USER prometheus
WORKDIR /prometheus
VOLUME /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
