# syntax=docker/dockerfile:1
#
# Observatory as a container: one static binary, no shell, running as the
# distroless nonroot user (uid 65532). docker-compose.observability.yml
# builds it; alone:
#
#   docker build -t observatory:dev .
#   docker run --rm -p 3001:3001 observatory:dev demo --addr :3001
#
# The image's command is `serve`; pass `demo` (as above) for the built-in
# synthetic fleet. Data (the embedded NATS, checkpoints) lives in
# /var/lib/observatory.

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
ENV OBSERVATORY_DATA_DIR=/var/lib/observatory \
    OBSERVATORY_ADDR=:3001
EXPOSE 3001
# The image has no shell, curl or wget: the binary checks itself
# (GET /readyz on its own address; exit 0 on 200).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/observatory", "healthcheck", "--url", "http://127.0.0.1:3001/readyz"]
ENTRYPOINT ["/usr/local/bin/observatory"]
CMD ["serve"]
