# syntax=docker/dockerfile:1
# portcullis: build with `docker build -t portcullis .` (README, "Docker and
# Kubernetes"). Two stages: a release build, then a distroless runtime with no
# shell, no package manager and a non-root user.

FROM rust:1-bookworm AS build
WORKDIR /src
# The package and its locked dependencies; benches/ because Cargo.toml names
# its bench targets. Tests, examples and e2e/ are not needed (.dockerignore).
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked

# glibc and libgcc (the binary links them dynamically), CA certificates, and the
# `nonroot` user (uid 65532); nothing else.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="portcullis" \
      org.opencontainers.image.description="An authentication sidecar: an OpenID Connect reverse proxy in front of apps that know nothing about login" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /src/target/release/portcullis /usr/local/bin/portcullis
# Configuration: mount a config.toml read-only at /etc/portcullis/config.toml
# (the default ./config.toml, from this directory), or give every key as a
# PORTCULLIS_<TABLE>__<KEY> variable; with neither file nor variables it will not
# start. Secrets: mount files (e.g. /run/secrets/session) and point the
# *_file keys at them (session.secret_file, providers.<id>.client_secret_file,
# session.redis_url_file).
WORKDIR /etc/portcullis
USER nonroot:nonroot
# Inside a container the proxy listens on every interface; `portcullis
# healthcheck` reads the same configuration and probes it on loopback.
ENV PORTCULLIS_SERVER__LISTEN=0.0.0.0:4180
EXPOSE 4180
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/portcullis", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["run"]
