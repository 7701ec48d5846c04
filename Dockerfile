# Multi-stage build: pg_query_go needs cgo, so the build stage has gcc; the
# runtime stage is a small Debian with the binary, CA certificates and libc.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The build context has no .git (.dockerignore): pass the version in,
# e.g. docker build --build-arg VERSION=$(git describe --always --dirty) .
ARG VERSION=dev
RUN CGO_ENABLED=1 go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/stratum-proxy ./cmd/stratum-proxy

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 stratum
COPY --from=build /out/stratum-proxy /usr/local/bin/stratum-proxy
COPY docker/config.yaml /etc/stratum/config.yaml
USER stratum
EXPOSE 6432 8080
ENTRYPOINT ["/usr/local/bin/stratum-proxy"]
CMD ["serve", "--config", "/etc/stratum/config.yaml"]
