/* What Fluent Bit 4.x's proxy and a Go output plugin share: the registration def and the flush results. */
#ifndef FLB_PROXY_H
#define FLB_PROXY_H

#define FLB_PROXY_OUTPUT_PLUGIN 2
#define FLB_PROXY_GOLANG 11
#define FLB_ERROR 0
#define FLB_OK 1
#define FLB_RETRY 2

/* include/fluent-bit/flb_plugin_proxy.h up to v4.2.0: the struct ends at description (32 bytes on LP64). */
struct flb_plugin_proxy_def {
    int type;
    int proxy;
    int flags;
    char *name;
    char *description;
};

#endif
