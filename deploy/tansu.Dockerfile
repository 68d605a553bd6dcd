# tansu 0.6.0, the Kafka-protocol broker the tests and the compose file run.
# Copies a host-built binary (scripts/install-tansu). The broker advertises
# the container's own address unless ADVERTISED is set, so clients on the
# Docker network and on the host reach it alike.
ARG BASE=debian:bookworm-slim
FROM ${BASE}
COPY tansu /usr/local/bin/tansu
COPY tansu-entrypoint /usr/local/bin/tansu-entrypoint
RUN mkdir -p /var/lib/tansu
VOLUME /var/lib/tansu
ENV STORAGE=memory://tansu/ PORT=9092
EXPOSE 9092
ENTRYPOINT ["/usr/local/bin/tansu-entrypoint"]
