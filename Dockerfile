# Multi-stage build: compile `invario` with the Rust toolchain, ship it alone
# on a small Debian image as a non-root user.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
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
USER invario
ENV INVARIO_LISTEN=0.0.0.0:8000
EXPOSE 8000
# `docker-compose run --rm api invario migrate` and `docker-compose exec api invario …` replace this.
CMD ["invario", "serve"]
