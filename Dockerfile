# Fluent Bit with the wivaudit plugin. Build the plugin on the same Debian release as the Fluent Bit image
# (Fluent Bit 3.2-4.x images are Debian 12, glibc 2.36): a .so built on newer glibc does not load there.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -buildmode=c-shared -trimpath -o /out/out_wivaudit.so .

FROM fluent/fluent-bit:4.2
COPY --from=build /out/out_wivaudit.so /fluent-bit/plugins/out_wivaudit.so
# Replace destinations.json with your customers' entries (mount it; it is reloaded when it changes).
COPY examples/fluent-bit.conf examples/parsers.conf examples/destinations.json /fluent-bit/etc/
# Daemon mode forks after the Go runtime has started and deadlocks; run in the foreground.
ENTRYPOINT ["/fluent-bit/bin/fluent-bit", "-e", "/fluent-bit/plugins/out_wivaudit.so", "-c", "/fluent-bit/etc/fluent-bit.conf"]
