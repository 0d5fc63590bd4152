# Multi-stage build: compile in the Rust image, run from a small Debian image.
# Migrations are compiled into the binary, so the runtime image needs only `pool`.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin pool && strip target/release/pool

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 pool
COPY --from=build /src/target/release/pool /usr/local/bin/pool
USER pool
ENV PORT=3001
EXPOSE 3001
# Railway (or any platform) picks the role: `pool web`, `pool worker`, `pool migrate`.
CMD ["pool", "web"]
