# grantshift container: a multi-stage build, a small non-root runtime image.
#   docker build -t grantshift .
#   docker run -p 3128:3128 -p 9464:9464 -v $PWD/deploy:/etc/grantshift:ro -v grantshift-data:/var/lib/grantshift grantshift

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Cargo.toml declares the benches: the manifest does not load without them.
COPY benches ./benches
# Nor without the test harness, a workspace member and dev-dependency (not built here),
# or the soak tool, another workspace member (not built here either).
COPY testkit ./testkit
COPY tools ./tools
RUN cargo build --release --locked --bin grantshift \
 && strip target/release/grantshift

FROM debian:bookworm-slim
# No OS CA bundle needed: upstream roots are compiled in (webpki-roots) plus extra_root_certs.
RUN useradd --system --uid 10001 --home-dir /var/lib/grantshift --shell /usr/sbin/nologin grantshift \
 && mkdir -p /etc/grantshift /var/lib/grantshift \
 && chown grantshift:grantshift /var/lib/grantshift
COPY --from=build /src/target/release/grantshift /usr/local/bin/grantshift
USER grantshift
WORKDIR /var/lib/grantshift
# The config (read-only) and the CA + events file (persistent, private to the container user).
VOLUME ["/etc/grantshift", "/var/lib/grantshift"]
ENV GRANTSHIFT_CONFIG=/etc/grantshift/grantshift.toml
EXPOSE 3128 9464
# Healthy when the admin server answers /readyz: `grantshift healthcheck` reads the same config
# as `run` ($GRANTSHIFT_CONFIG) and probes its proxy.admin_listen (loopback for 0.0.0.0), so
# the check follows a changed admin port (docs/monitoring.md, "Container health").
HEALTHCHECK --interval=15s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/grantshift", "healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/grantshift"]
CMD ["run"]
