# The pipeline's one binary: validator, aggregator (with the planner API and
# dashboard), submit, demand, topics. Copies a host-built binary; build it
# with deploy/build-images, which also makes a local base image when no
# registry is reachable (BASE=forecast/base:bookworm-libssl3).
ARG BASE=debian:bookworm-slim
FROM ${BASE}
# librdkafka in forecastctl links the system's OpenSSL (TLS and SASL/SCRAM to
# the brokers): a base without it gets it from Debian.
RUN if ! ldconfig -p | grep -q 'libssl\.so\.3'; then \
      apt-get update && apt-get install -y --no-install-recommends libssl3 ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi
COPY forecastctl /usr/local/bin/forecastctl
COPY examples/ /usr/share/forecast/examples/
RUN useradd --system --no-create-home --shell /usr/sbin/nologin forecast
USER forecast
WORKDIR /usr/share/forecast
# The services serve /metrics, /healthz, /readyz (and the aggregator the API) here.
ENV FORECAST_HTTP=0.0.0.0:9464
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/forecastctl"]
CMD ["--help"]
