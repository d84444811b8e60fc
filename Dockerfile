# syntax=docker/dockerfile:1
#
# The gatehouse container image: one static binary on distroless/static,
# running as the unprivileged user 65532 (distroless's `nonroot`).
#
#   docker build -t gatehouse:0.1.0 \
#       --build-arg GATEHOUSE_GIT_COMMIT="$(git rev-parse --short HEAD)" .
#   docker run --rm -p 9191:9191 -p 8080:8080 \
#       -v "$PWD/my-config:/etc/gatehouse:ro" gatehouse:0.1.0
#   docker run --rm gatehouse:0.1.0 check-config -c /etc/gatehouse/config.yaml
#
# The build stage runs the README's build command. What it needs beyond the
# Rust image:
# - musl-tools: the C compiler for the static musl target. aws-lc-sys and
#   ring compile their C (and assembly) with `cc`; aws-lc-sys ships
#   pregenerated bindings for x86_64 and aarch64 musl and builds without
#   CMake by default, so no cmake, clang/bindgen, Go or Perl is needed.
# - no protoc: build.rs compiles the .proto files with the pure-Rust protox.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
# The musl target of the platform being built (docker buildx sets
# TARGETARCH; a plain `docker build` builds for the host).
ARG TARGETARCH
RUN case "${TARGETARCH:-$(dpkg --print-architecture)}" in \
        amd64) echo x86_64-unknown-linux-musl ;; \
        arm64) echo aarch64-unknown-linux-musl ;; \
        *) echo "unsupported architecture: ${TARGETARCH}" >&2; exit 1 ;; \
    esac > /rust-target \
 && rustup target add "$(cat /rust-target)"
WORKDIR /src
# What the build reads: the manifest and lock file, the build script and its
# protos, the sources, the demo config compiled into the binary
# (include_str!), and the bench target Cargo.toml declares.
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto ./proto
COPY src ./src
COPY config ./config
COPY benches ./benches
# `gatehouse version` names the commit and build date; the context has no
# .git, so pass them: --build-arg GATEHOUSE_GIT_COMMIT=$(git rev-parse
# --short HEAD) --build-arg SOURCE_DATE_EPOCH=$(git log -1 --format=%ct).
# Unset: commit `unknown`, today's date.
ARG GATEHOUSE_GIT_COMMIT
ARG SOURCE_DATE_EPOCH
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    export CARGO_BUILD_TARGET="$(cat /rust-target)" \
 && cargo build --release --locked --bin gatehouse \
 && cp "target/${CARGO_BUILD_TARGET}/release/gatehouse" /gatehouse
# Fail the build if the binary is not static, or does not run.
RUN if readelf -d /gatehouse | grep -q NEEDED; then \
        echo "gatehouse is dynamically linked" >&2; exit 1; \
    fi \
 && /gatehouse --version \
 && /gatehouse check-config -c config/demo.yaml

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="gatehouse" \
      org.opencontainers.image.description="Envoy external authorization service (gRPC ext_authz v3)" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /gatehouse /gatehouse
USER 65532:65532
# 9191: gRPC (Check, grpc.health.v1, reflection); 8080: the HTTP side port.
EXPOSE 9191 8080
ENTRYPOINT ["/gatehouse"]
CMD ["serve", "--config", "/etc/gatehouse/config.yaml"]
