# Multi-stage build: compile `invario` with the Rust toolchain, ship it alone
# on a small Debian image as a non-root user (uid 10001).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src

# Dependencies first, in a layer of their own: only the manifests and the
# lock file are copied, each crate stands in as an empty stub, and every
# dependency is compiled. The layer is reused until a manifest or
# Cargo.lock changes, so a source edit rebuilds Invario's crates only
# (minutes, not the ~9 of a full build on 2 cores).
COPY Cargo.toml Cargo.lock ./
COPY invario-tlog/Cargo.toml invario-tlog/
COPY invario-core/Cargo.toml invario-core/
COPY invario-postgres/Cargo.toml invario-postgres/
COPY invario-sqlite/Cargo.toml invario-sqlite/
COPY invario-http/Cargo.toml invario-http/
COPY invario-cli/Cargo.toml invario-cli/
COPY invario-testkit/Cargo.toml invario-testkit/
COPY invario-bench/Cargo.toml invario-bench/
RUN for crate in invario-tlog invario-core invario-postgres invario-sqlite invario-http invario-testkit; do \
        mkdir -p "$crate/src" && touch "$crate/src/lib.rs"; \
    done \
 && for crate in invario-cli invario-bench; do \
        mkdir -p "$crate/src" && echo 'fn main() {}' > "$crate/src/main.rs"; \
    done \
 && cargo build --release --locked -p invario-cli \
 && rm -rf invario-*/src target/release/.fingerprint/invario-* target/release/deps/*invario* \
           target/release/invario target/release/build/invario-*

# Then the sources: only Invario's own crates compile here.
COPY . .
RUN cargo build --release --locked -p invario-cli \
 && strip target/release/invario

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin invario \
 && mkdir -p /var/lib/invario/keys /var/lib/invario/checkpoints \
 && chown -R invario /var/lib/invario
COPY --from=build /src/target/release/invario /usr/local/bin/invario
# The service runs as uid 10001: a folder mounted from elsewhere (keys,
# checkpoints) must be readable and writable by that uid (`chown -R 10001`).
USER invario
ENV INVARIO_LISTEN=0.0.0.0:8000
EXPOSE 8000
# `docker compose run --rm api invario migrate` and `docker compose exec api invario …` replace this.
CMD ["invario", "serve"]
