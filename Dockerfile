# syntax=docker/dockerfile:1
# Multi-stage build of a static extentd binary (STYLE rule 44).
#   docker build --build-arg VERSION=$(git describe --tags --always) -t extentd .
#   docker run -p 10809:10809 -v extentd-data:/var/lib/extentd extentd
ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first, so source edits do not invalidate the download layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath \
        -ldflags "-s -w -X main.version=${VERSION}" \
        -o /out/extentd ./cmd/extentd \
    && /out/extentd version
# The image directory, owned by the runtime user (distroless nonroot: 65532).
RUN mkdir -p /out/var/lib/extentd && chown 65532:65532 /out/var/lib/extentd

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/extentd /usr/local/bin/extentd
COPY --from=build --chown=65532:65532 /out/var/lib/extentd /var/lib/extentd
USER 65532:65532
WORKDIR /var/lib/extentd
VOLUME ["/var/lib/extentd"]
# NBD, then the admin endpoint (/metrics, /debug/extentd/info).
EXPOSE 10809 10810
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/extentd"]
# In a container the server must listen on all interfaces; the image is
# created (sparse, 1 GiB unless --size) in the volume on first start.
CMD ["serve", "--ipaddr", "0.0.0.0", "--admin-address", "0.0.0.0:10810", "--log-format", "json", "/var/lib/extentd/disk.img"]
