# syntax=docker/dockerfile:1
#
# Observatory as a container: one static binary, no shell, running as the
# distroless nonroot user (uid 65532). docker-compose.observability.yml
# builds it; alone:
#
#   docker build -t observatory:dev .
#   docker run --rm -p 127.0.0.1:3001:3001 \
#     -e OBSERVATORY_ADMIN_PASSWORD='choose-one' \
#     -e OBSERVATORY_PUBLIC_URL=http://localhost:3001 \
#     -v observatory-data:/var/lib/observatory \
#     observatory:dev demo
#
# The image's command is `serve`; pass `demo` (as above) for the built-in
# synthetic fleet. Both listen on :3001 (OBSERVATORY_ADDR), which in a
# container is beyond loopback, so both refuse to start (exit status 2)
# unless given:
#   - OBSERVATORY_ADMIN_PASSWORD (or --admin-password), not the default
#     "admin";
#   - OBSERVATORY_PUBLIC_URL (or --public-url, comma-separated or
#     repeated): every address browsers and clients reach the server at,
#     e.g. http://localhost:3001 through the published port, or
#     https://observatory.example.com. The server answers no other host
#     name (421); health probes and /metrics by IP are exempt.
#
# Data lives in /var/lib/observatory (OBSERVATORY_DATA_DIR), with the keys:
# the embedded NATS's operator and account keys (keys/nats/) and the keys
# that sign tokens and enrollment keys (keys/signing.json), all mode 0600.
# Mount a volume there, or tokens stop verifying and the streams are lost
# when the container is replaced.
#
# The embedded NATS runs in operator mode (no anonymous clients) and
# listens on 127.0.0.1:4222 inside the container. For workers in other
# containers or on other machines, which get their NATS credentials when
# they enroll, set OBSERVATORY_NATS_LISTEN=0.0.0.0:4222 and
# OBSERVATORY_NATS_ADVERTISE=nats://<name workers reach>:4222, and publish
# 4222 only where those workers are (docs/deploy.md).
#
# GET /metrics on :3001 needs a bearer token (an admin or a metrics token);
# OBSERVATORY_METRICS_ADDR=:9464 serves it without one on a listener of its
# own, for a scraper on a private network: do not publish that port.

FROM golang:1.26.8 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# CGO_ENABLED=0: a static binary that needs no libc in the final image.
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -buildvcs=false -ldflags="-s -w" \
      -o /out/observatory ./cmd/observatory \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/observatory /usr/local/bin/observatory
COPY --from=build --chown=65532:65532 /out/data /var/lib/observatory
USER 65532:65532
WORKDIR /var/lib/observatory
# OBSERVATORY_HEALTHCHECK_URL is what the HEALTHCHECK asks: /readyz on the
# server's own address, by IP (probes need no credential and no public
# host name). Change it with OBSERVATORY_ADDR's port. Under TLS
# (OBSERVATORY_TLS_CERT and OBSERVATORY_TLS_KEY) the same port serves
# HTTPS only, with a certificate for the public host name, not for
# 127.0.0.1: set OBSERVATORY_HEALTHCHECK_URL=https://127.0.0.1:3001/readyz
# and OBSERVATORY_HEALTHCHECK_INSECURE=true (the probe sends no credential
# and reads only the status).
ENV OBSERVATORY_DATA_DIR=/var/lib/observatory \
    OBSERVATORY_ADDR=:3001 \
    OBSERVATORY_HEALTHCHECK_URL=http://127.0.0.1:3001/readyz
EXPOSE 3001
# The image has no shell, curl or wget: the binary checks itself (GET
# OBSERVATORY_HEALTHCHECK_URL, exit 0 on 200). It takes no --url, so that
# the environment above decides (a flag would override it).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/observatory", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/observatory"]
CMD ["serve"]
