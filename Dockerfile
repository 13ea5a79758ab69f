# syntax=docker/dockerfile:1
# rapl-exporter: multi-stage. The build stage runs scripts/build-release, the same script CI runs.

# Swift 6 builder (6.2+: swift-protobuf's manifest needs tools 6.2).
FROM swift:6.2-bookworm AS build
WORKDIR /src
COPY . .
RUN ./scripts/build-release /out

# Slim runtime: only the snappy and libcap runtime libraries; the Swift standard library is static.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libsnappy1v5 libcap2 libcap2-bin ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/rapl-exporter /usr/local/bin/rapl-exporter
# File capabilities, *permitted only* (+p, no effective bit): they are granted only as far as the
# container's bounding set allows (what `docker run --cap-add` adds), so the binary still starts
# without them. The exporter raises the one capability its backend needs, opens the counters, and
# drops every capability before pushing.
RUN setcap cap_perfmon,cap_sys_rawio,cap_dac_read_search+p /usr/local/bin/rapl-exporter \
 && apt-get purge -y libcap2-bin && apt-get autoremove -y \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin rapl \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/rapl-exporter
# The spool's home (SPOOL_DIR=/var/lib/rapl-exporter/spool in deploy/): owned by the runtime user, so a
# named volume mounted here starts with that owner (Docker copies it into a new volume).
VOLUME /var/lib/rapl-exporter
USER 10001:10001
# The exporter's own health (windows closing, pushes delivered), not Prometheus'. Its heartbeat file is
# /tmp/rapl-exporter-10001/health, in a directory the exporter makes for its user (HEALTH_FILE overrides).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["rapl-exporter", "healthcheck"]
ENTRYPOINT ["rapl-exporter"]
