# Fluent Bit with the wivaudit plugin. FLUENT_BIT_VERSION picks the Fluent Bit image (tested: 4.2.8; see the
# docs/configuration.md for the versions the plugin works with):
#   docker build --build-arg FLUENT_BIT_VERSION=4.2.8 -t wivaudit-fluent-bit:4.2.8 .
# The plugin is built on the same Debian release as the Fluent Bit image (Fluent Bit 3.2-4.x images are
# Debian 12, glibc 2.36): a .so built against a newer glibc does not load there.
ARG FLUENT_BIT_VERSION=4.2.8

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -buildmode=c-shared -trimpath -o /out/out_wivaudit.so .

FROM fluent/fluent-bit:${FLUENT_BIT_VERSION}
COPY --from=build /out/out_wivaudit.so /fluent-bit/plugins/out_wivaudit.so
# The example configurations (fluent-bit.conf is the default; -c fluent-bit.yaml or multi-tenant.yaml picks
# another). Replace destinations.json with your customers' entries: mount a folder holding yours (a single-file
# mount keeps the file it started with when it is replaced) and point Destinations_File into it.
COPY examples/fluent-bit.conf examples/fluent-bit.yaml examples/multi-tenant.yaml examples/parsers.conf examples/destinations.json /fluent-bit/etc/
# Fluent Bit's filesystem storage, the tail DBs and the plugin's Store_Dir: what was accepted but not yet
# delivered. Mount a persistent volume here, or it is lost with the container.
VOLUME /var/lib/fluent-bit
# Daemon mode forks after the Go runtime has started and deadlocks; run in the foreground.
ENTRYPOINT ["/fluent-bit/bin/fluent-bit", "-e", "/fluent-bit/plugins/out_wivaudit.so"]
CMD ["-c", "/fluent-bit/etc/fluent-bit.conf"]
