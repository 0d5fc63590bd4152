# Multi-stage build: compile in the Rust image, run from a small Debian image.
# Migrations are compiled into the binary, so the runtime image needs only `pool`.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src

# Dependencies first, in a layer of their own: it is rebuilt only when Cargo.toml or
# Cargo.lock change, not on every source change. Stub sources stand in for ours.
COPY Cargo.toml Cargo.lock build.rs ./
COPY sim/Cargo.toml sim/Cargo.toml
COPY bench/Cargo.toml bench/Cargo.toml
RUN mkdir -p src sim/src bench/src migrations \
    && echo 'fn main() {}' > src/main.rs && cp src/main.rs bench/src/main.rs \
    && touch src/lib.rs sim/src/lib.rs bench/src/lib.rs \
    && cargo build --release --locked --no-default-features --bin pool \
    && rm -rf src sim/src bench/src target/release/.fingerprint/pool-* target/release/deps/pool-* \
              target/release/deps/libpool* target/release/deps/pool_*

# The commit this image is built from, for `/version` and the dashboard. Railway
# passes RAILWAY_GIT_COMMIT_SHA to Docker builds; elsewhere pass --build-arg.
ARG RAILWAY_GIT_COMMIT_SHA=unknown
ENV POOL_GIT_COMMIT=${RAILWAY_GIT_COMMIT_SHA}
COPY . .
# Without the default `dev-tools` feature: no simulator and no `pool dev`.
RUN cargo build --release --locked --no-default-features --bin pool && strip target/release/pool

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 pool
COPY --from=build /src/target/release/pool /usr/local/bin/pool
USER pool
ENV PORT=3001
EXPOSE 3001
# Railway (or any platform) picks the role: `pool web`, `pool worker`, `pool migrate`.
CMD ["pool", "web"]
