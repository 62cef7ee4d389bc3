/*
 * nullout: a Go-proxy output plugin that does nothing, written in C so that it brings no runtime of its own.
 * Driven by flbhost, it measures what the host itself costs (reading its input, copying chunks, coroutines),
 * as out_null does for Fluent Bit. Every flush returns OK without reading the chunk.
 */
#include <stddef.h>

#include "flb_proxy.h"

int FLBPluginRegister(struct flb_plugin_proxy_def *def) {
    def->type = FLB_PROXY_OUTPUT_PLUGIN;
    def->proxy = FLB_PROXY_GOLANG;
    def->flags = 0;
    def->name = "nullout";
    def->description = "discards every chunk";
    return 0;
}

int FLBPluginInit(void *plugin) {
    (void)plugin;
    return 1;
}

int FLBPluginFlushCtx(void *ctx, const void *data, size_t size, char *tag) {
    (void)ctx;
    (void)data;
    (void)size;
    (void)tag;
    return FLB_OK;
}

int FLBPluginExitCtx(void *ctx) {
    (void)ctx;
    return 1;
}
