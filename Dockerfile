# Multi-stage build: a static-ish release binary on a slim Debian base.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --bin portcullis

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home portcullis
COPY --from=build /src/target/release/portcullis /usr/local/bin/portcullis
COPY config.toml /etc/portcullis/config.toml
USER 10001
# Listen on all interfaces inside the container; override public_url and the rest
# with PORTCULLIS_* variables or a mounted config file. Probe GET /oauth2/healthz
# (liveness) and /oauth2/readyz (readiness) from the orchestrator.
ENV PORTCULLIS_SERVER__LISTEN=0.0.0.0:4180
EXPOSE 4180
ENTRYPOINT ["portcullis", "--config", "/etc/portcullis/config.toml"]
CMD ["run"]
