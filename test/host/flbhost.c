/*
 * flbhost: a stand-in for Fluent Bit 4.x that loads a Go output plugin (.so) and drives it the way Fluent Bit's
 * Go proxy does (src/proxy/go/ and src/flb_plugin_proxy.c in Fluent Bit's sources):
 *   - dlopen on the main thread after SIGTERM/SIGINT handlers are installed; PreRegister, Register into a 32-byte
 *     def that is NOT zeroed (flb_malloc up to v4.2.0), and die if the plugin writes past it; accept only proxy 11 /
 *     type 2. With -a 5.1.1, the def is v5.1.1's: 48 zeroed bytes ending in event_type and config_map;
 *   - one struct flbgo_output_plugin for the .so; per [OUTPUT] section a zeroed proxy context, Init on the
 *     pipeline thread with the same plugin pointer, o_ins and context updated; Init <= 0 aborts startup;
 *   - properties are case-insensitive, first value wins, ${ENV} expanded, core keys never reach the plugin;
 *   - every flush runs inside a coroutine: swapcontext onto a small mmap'd stack (coro_stack_size, 24 KiB);
 *     Workers 0 flushes on the pipeline thread, Workers N on N threads concurrently for the same context;
 *   - returns: 1 OK, 2 RETRY (rescheduled after uniform(base, min(cap, base*2^n)) seconds until Retry_Limit),
 *     anything else ERROR (chunk dropped);
 *   - SIGTERM/SIGINT (or -x at end of input): stop taking input, pending retries run now, tasks keep flushing for
 *     up to Grace seconds, then per instance in order: join its workers, PreExit(0), ExitCtx (else Exit); then
 *     Unregister once on the main thread and dlclose.
 *
 * Input (-i FILE, "-" for stdin): frames of  u32be tag_len | tag | u32be chunk_len | chunk  (msgpack events).
 * Stdout: one line per finished flush, "flush <instance> <seq> <OK|RETRY|ERROR>", and a final "summary" line
 * with the counts, this process's peak RSS and how long the flush callbacks took (median, p99, max, in us).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "flb_proxy.h"

/* The same struct in v5.1.1: Fluent Bit copies event_type and config_map (NULL: no key is checked). */
struct flb_plugin_proxy_def_511 {
    struct flb_plugin_proxy_def head;
    int event_type;
    void *config_map;
};

/* Bytes after a 4.x def that the plugin must leave alone: in Fluent Bit they belong to the heap. */
#define DEF_GUARD 16

struct flb_plugin_proxy_context {
    void *remote_context;
    void *proxy;
};

struct output_instance;

struct flb_api {
    const char *(*output_get_property)(const char *, struct output_instance *);
    const char *(*input_get_property)(const char *, void *);
    void *(*output_get_cmt_instance)(struct output_instance *);
    void *(*input_get_cmt_instance)(void *);
    void (*log_print)(int, const char *, int, const char *, ...);
    int (*input_log_check)(void *, int);
    int (*output_log_check)(struct output_instance *, int);
    const char *(*custom_get_property)(const char *, void *);
    int (*custom_log_check)(void *, int);
};

/* src/proxy/go/go.h */
struct flbgo_output_plugin {
    char *name;
    void *api;
    void *o_ins;
    struct flb_plugin_proxy_context *context;
    int (*cb_init)(struct flbgo_output_plugin *);
    int (*cb_flush)(const void *, size_t, const char *);
    int (*cb_flush_ctx)(void *, const void *, size_t, char *);
    int (*cb_exit)(void);
    int (*cb_exit_ctx)(void *);
};

struct prop {
    char *key;
    char *val;
};

struct task;

struct output_instance {
    char name[64];
    char *match;
    int workers;
    int retry_limit; /* -1: no limit */
    int log_level;
    struct prop *props;
    int nprops;
    struct flb_plugin_proxy_context *ctx;
    pthread_t *threads;
    /* worker queue */
    struct task *head, *tail;
    int quitting;
    pthread_cond_t cond;
};

struct task {
    struct output_instance *ins;
    long seq;
    char *tag;
    unsigned char *data;
    size_t size;
    int tries;
    double due;
    double took; /* seconds the last flush callback took */
    struct task *next;
};

/* ---------- globals ---------- */
static volatile sig_atomic_t exit_signal = 0;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER; /* tasks, retries, counters */
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;

static struct output_instance *outs;
static int nouts;
static int global_log_level = 3;
static int grace = 5;
static int sched_base = 5, sched_cap = 2000;
static size_t coro_stack_size = 24576;

static struct task *retries; /* scheduled retries */
static long pending;          /* tasks created and not finished (queued, running or waiting to retry) */
static long n_chunks, n_ok, n_retry, n_error, n_dropped;
static double *durations; /* every flush callback's, for the summary */
static long n_durations, cap_durations;

static struct flbgo_output_plugin P;
static int (*cb_pre_run)(int);
static void (*cb_pre_exit)(int);

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void on_signal(int sig) {
    (void)sig;
    exit_signal = 1;
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[flbhost] error: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

/* ---------- the API table the plugin sees ---------- */
static const char *level_names[] = {"", "error", " warn", " info", "debug", "trace"};

static void host_log_print(int level, const char *file, int line, const char *fmt, ...) {
    (void)file;
    (void)line;
    char ts[32];
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(ts, sizeof ts, "%Y/%m/%d %H:%M:%S", &tm);
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&log_mu);
    fprintf(stderr, "[%s] [%s] ", ts, level >= 1 && level <= 5 ? level_names[level] : "?");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    fflush(stderr);
    pthread_mutex_unlock(&log_mu);
    va_end(ap);
}

static const char *host_get_property(const char *key, struct output_instance *ins) {
    size_t n = strlen(key);
    for (int i = 0; i < ins->nprops; i++) {
        if (strlen(ins->props[i].key) == n && strcasecmp(ins->props[i].key, key) == 0) {
            return ins->props[i].val;
        }
    }
    return NULL;
}

static int host_output_log_check(struct output_instance *ins, int level) { return ins->log_level >= level; }
static const char *host_null_property(const char *key, void *ins) { (void)key; (void)ins; return NULL; }
static void *host_null_cmt(void *ins) { (void)ins; return NULL; }
static int host_null_log_check(void *ins, int level) { (void)ins; return level <= global_log_level; }

static struct flb_api api = {
    .output_get_property = host_get_property,
    .input_get_property = host_null_property,
    .output_get_cmt_instance = (void *(*)(struct output_instance *))host_null_cmt,
    .input_get_cmt_instance = host_null_cmt,
    .log_print = host_log_print,
    .input_log_check = host_null_log_check,
    .output_log_check = host_output_log_check,
    .custom_get_property = host_null_property,
    .custom_log_check = host_null_log_check,
};

/* ---------- configuration (Fluent Bit classic format) ---------- */
static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = 0;
    return s;
}

static char *expand_env(const char *v) {
    size_t cap = strlen(v) + 1, len = 0;
    char *out = malloc(cap);
    for (const char *p = v; *p;) {
        const char *add = p;
        size_t addlen = 1;
        char name[256];
        if (p[0] == '$' && p[1] == '{') {
            const char *end = strchr(p, '}');
            if (end && (size_t)(end - p - 2) < sizeof name) {
                memcpy(name, p + 2, end - p - 2);
                name[end - p - 2] = 0;
                add = getenv(name);
                if (!add) add = "";
                addlen = strlen(add);
                p = end + 1;
            } else {
                p++;
            }
        } else {
            p++;
        }
        if (len + addlen + 1 > cap) {
            cap = (len + addlen + 1) * 2;
            out = realloc(out, cap);
        }
        memcpy(out + len, add, addlen);
        len += addlen;
    }
    out[len] = 0;
    return out;
}

static int is_core_key(const char *k) {
    static const char *exact[] = {"name", "match", "match_regex", "alias", "log_level", "log_suppress_interval",
                                  "host", "port", "ipv6", "retry_limit", "workers", "storage.total_limit_size",
                                  "tls", NULL};
    static const char *prefixes[] = {"tls.", "net.", "oauth2", "http_server", NULL};
    for (int i = 0; exact[i]; i++)
        if (strcasecmp(k, exact[i]) == 0) return 1;
    for (int i = 0; prefixes[i]; i++)
        if (strncasecmp(k, prefixes[i], strlen(prefixes[i])) == 0) return 1;
    return 0;
}

static int parse_level(const char *v) {
    static const char *names[] = {"off", "error", "warn", "info", "debug", "trace"};
    for (int i = 0; i < 6; i++)
        if (strcasecmp(v, names[i]) == 0) return i;
    die("unknown log level '%s'", v);
    return 0;
}

static int parse_retry_limit(const char *v) {
    if (strcasecmp(v, "no_limits") == 0 || strcasecmp(v, "false") == 0) return -1;
    if (strcasecmp(v, "no_retries") == 0) return 0;
    return atoi(v);
}

static void load_config(const char *path, const char *plugin_name) {
    FILE *f = fopen(path, "r");
    if (!f) die("cannot open %s: %s", path, strerror(errno));
    char line[8192];
    enum { NONE, SERVICE, OUTPUT, OTHER } section = NONE;
    struct output_instance cur;
    int have = 0, cur_is_ours = 0;
    int per_plugin = 0;
    for (;;) {
        char *got = fgets(line, sizeof line, f);
        char *s = got ? trim(line) : NULL;
        if (!got || s[0] == '[') {
            if (have && cur_is_ours) {
                outs = realloc(outs, sizeof *outs * (nouts + 1));
                outs[nouts++] = cur;
            }
            have = 0;
            if (!got) break;
            if (strcasecmp(s, "[SERVICE]") == 0) section = SERVICE;
            else if (strcasecmp(s, "[OUTPUT]") == 0) {
                section = OUTPUT;
                memset(&cur, 0, sizeof cur);
                cur.retry_limit = 1;
                cur.log_level = -1;
                have = 1;
                cur_is_ours = 0;
            } else section = OTHER;
            continue;
        }
        if (s[0] == 0 || s[0] == '#') continue;
        char *sp = s;
        while (*sp && !isspace((unsigned char)*sp)) sp++;
        char *val = *sp ? trim(sp + 1) : sp;
        *sp = 0;
        char *key = s;
        char *v = expand_env(val);
        if (section == SERVICE) {
            if (strcasecmp(key, "grace") == 0) grace = atoi(v);
            else if (strcasecmp(key, "scheduler.base") == 0) sched_base = atoi(v);
            else if (strcasecmp(key, "scheduler.cap") == 0) sched_cap = atoi(v);
            else if (strcasecmp(key, "log_level") == 0) global_log_level = parse_level(v);
            else if (strcasecmp(key, "coro_stack_size") == 0) coro_stack_size = (size_t)atol(v);
            free(v);
        } else if (section == OUTPUT) {
            if (strcasecmp(key, "name") == 0) {
                cur_is_ours = strcasecmp(v, plugin_name) == 0;
                if (cur_is_ours) snprintf(cur.name, sizeof cur.name, "%s.%d", plugin_name, per_plugin++);
            } else if (strcasecmp(key, "match") == 0) {
                cur.match = strdup(v);
            } else if (strcasecmp(key, "workers") == 0) {
                cur.workers = atoi(v);
            } else if (strcasecmp(key, "retry_limit") == 0) {
                cur.retry_limit = parse_retry_limit(v);
            } else if (strcasecmp(key, "log_level") == 0) {
                cur.log_level = parse_level(v);
            }
            if (is_core_key(key)) {
                free(v);
            } else {
                cur.props = realloc(cur.props, sizeof *cur.props * (cur.nprops + 1));
                cur.props[cur.nprops].key = strdup(key);
                cur.props[cur.nprops].val = v;
                cur.nprops++;
            }
        } else {
            free(v);
        }
    }
    fclose(f);
    for (int i = 0; i < nouts; i++)
        if (outs[i].log_level < 0) outs[i].log_level = global_log_level;
}

/* Fluent Bit's wildcard match: '*' matches any run of characters. */
static int tag_match(const char *pattern, const char *tag) {
    if (!pattern) return 0;
    if (*pattern == 0) return *tag == 0;
    if (*pattern == '*') {
        for (const char *t = tag;; t++) {
            if (tag_match(pattern + 1, t)) return 1;
            if (*t == 0) return 0;
        }
    }
    return *pattern == *tag && tag_match(pattern + 1, tag + 1);
}

/* ---------- flushing inside a coroutine ---------- */
struct coro {
    ucontext_t caller, self;
    struct task *t;
    int ret;
};
static __thread struct coro *current_coro;

static void coro_main(void) {
    struct coro *c = current_coro;
    struct task *t = c->t;
    /* Fluent Bit copies the tag into a malloc'd NUL-terminated buffer for each call. */
    char *tag = strdup(t->tag);
    double start = now_s();
    c->ret = P.cb_flush_ctx ? P.cb_flush_ctx(t->ins->ctx->remote_context, t->data, t->size, tag)
                            : P.cb_flush(t->data, t->size, tag);
    t->took = now_s() - start;
    free(tag);
}

static int run_flush(struct task *t) {
    long page = sysconf(_SC_PAGESIZE);
    size_t len = (coro_stack_size + page - 1) / page * page + page;
    unsigned char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) die("mmap coroutine stack: %s", strerror(errno));
    mprotect(mem, page, PROT_NONE); /* guard page: an overflow faults instead of corrupting memory */
    struct coro c = {.t = t, .ret = -1};
    getcontext(&c.self);
    c.self.uc_stack.ss_sp = mem + page;
    c.self.uc_stack.ss_size = len - page;
    c.self.uc_link = &c.caller;
    makecontext(&c.self, coro_main, 0);
    current_coro = &c;
    swapcontext(&c.caller, &c.self);
    current_coro = NULL;
    munmap(mem, len);
    return c.ret;
}

static double backoff(int tries) {
    long ceiling = sched_base;
    for (int i = 0; i < tries && ceiling < sched_cap; i++) ceiling *= 2;
    if (ceiling > sched_cap) ceiling = sched_cap;
    if (ceiling < sched_base) ceiling = sched_base;
    return sched_base + (double)(rand() % (ceiling - sched_base + 1));
}

static void free_task(struct task *t) {
    free(t->tag);
    free(t->data);
    free(t);
}

/* Called with the result of one flush; decides OK / retry / drop. */
static void finish(struct task *t, int ret) {
    const char *word = ret == FLB_OK ? "OK" : ret == FLB_RETRY ? "RETRY" : "ERROR";
    printf("flush %s %ld %s\n", t->ins->name, t->seq, word);
    fflush(stdout);
    pthread_mutex_lock(&mu);
    if (n_durations == cap_durations) {
        cap_durations = cap_durations ? cap_durations * 2 : 1024;
        durations = realloc(durations, sizeof *durations * cap_durations);
    }
    durations[n_durations++] = t->took;
    if (ret == FLB_OK) {
        n_ok++;
    } else if (ret == FLB_RETRY) {
        n_retry++;
        if (t->ins->retry_limit >= 0 && t->tries >= t->ins->retry_limit) {
            n_dropped++;
            host_log_print(1, NULL, 0, "[engine] chunk %ld cannot be retried: task_id for %s, retries %d",
                           t->seq, t->ins->name, t->tries);
        } else {
            t->tries++;
            t->due = now_s() + backoff(t->tries);
            t->next = retries;
            retries = t;
            pthread_cond_broadcast(&changed);
            pthread_mutex_unlock(&mu);
            return;
        }
    } else {
        n_error++;
    }
    pending--;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&mu);
    free_task(t);
}

static void *worker_main(void *arg) {
    struct output_instance *ins = arg;
    for (;;) {
        pthread_mutex_lock(&mu);
        while (!ins->head && !ins->quitting) pthread_cond_wait(&ins->cond, &mu);
        struct task *t = ins->head;
        if (!t) {
            pthread_mutex_unlock(&mu);
            return NULL;
        }
        ins->head = t->next;
        if (!ins->head) ins->tail = NULL;
        pthread_mutex_unlock(&mu);
        finish(t, run_flush(t));
    }
}

/* Hands a task to its instance: inline on the pipeline thread, or to its worker queue. */
static void dispatch(struct task *t) {
    struct output_instance *ins = t->ins;
    if (ins->workers <= 0) {
        finish(t, run_flush(t));
        return;
    }
    pthread_mutex_lock(&mu);
    t->next = NULL;
    if (ins->tail) ins->tail->next = t;
    else ins->head = t;
    ins->tail = t;
    pthread_cond_signal(&ins->cond);
    pthread_mutex_unlock(&mu);
}

/* ---------- input ---------- */
static FILE *input;
static int input_done;
static long seq;

static int read_u32(uint32_t *v) {
    unsigned char b[4];
    if (fread(b, 1, 4, input) != 4) return 0;
    *v = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    return 1;
}

/* Reads one chunk and creates a task per matching instance. Returns 0 at end of input. */
static int ingest_one(void) {
    uint32_t tl, cl;
    if (!read_u32(&tl)) return 0;
    char *tag = malloc(tl + 1);
    if (fread(tag, 1, tl, input) != tl || !read_u32(&cl)) die("truncated input frame");
    tag[tl] = 0;
    unsigned char *chunk = malloc(cl ? cl : 1);
    if (fread(chunk, 1, cl, input) != cl) die("truncated input chunk");
    long my_seq = seq++;
    for (int i = 0; i < nouts; i++) {
        if (!tag_match(outs[i].match, tag)) continue;
        struct task *t = calloc(1, sizeof *t);
        t->ins = &outs[i];
        t->seq = my_seq;
        t->tag = strdup(tag);
        t->data = malloc(cl ? cl : 1);
        memcpy(t->data, chunk, cl);
        t->size = cl;
        pthread_mutex_lock(&mu);
        pending++;
        n_chunks++;
        pthread_mutex_unlock(&mu);
        dispatch(t);
    }
    free(tag);
    free(chunk);
    return 1;
}

/* Moves due retries (all of them when 'all') back to dispatch. */
static void run_due_retries(int all) {
    double now = now_s();
    struct task *due = NULL;
    pthread_mutex_lock(&mu);
    struct task **pp = &retries;
    while (*pp) {
        struct task *t = *pp;
        if (all || t->due <= now) {
            *pp = t->next;
            t->next = due;
            due = t;
        } else {
            pp = &t->next;
        }
    }
    pthread_mutex_unlock(&mu);
    while (due) {
        struct task *next = due->next;
        dispatch(due);
        due = next;
    }
}

static int exit_when_done;

/* Waits (mu held) until a task finishes or 50 ms pass, so that retries coming due are seen. */
static void wait_changed(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 50 * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&changed, &mu, &ts);
}

static void *pipeline_main(void *arg) {
    (void)arg;
    for (int i = 0; i < nouts; i++) {
        struct output_instance *ins = &outs[i];
        ins->ctx = calloc(1, sizeof *ins->ctx);
        P.api = &api;
        P.o_ins = ins;
        P.context = ins->ctx;
        int r = P.cb_init(&P);
        if (r <= 0) {
            host_log_print(1, NULL, 0, "[output] failed to initialize '%s' plugin", ins->name);
            printf("init-failed %s\n", ins->name);
            fflush(stdout);
            return (void *)1;
        }
    }
    for (int i = 0; i < nouts; i++) {
        if (cb_pre_run) cb_pre_run(0);
        struct output_instance *ins = &outs[i];
        pthread_cond_init(&ins->cond, NULL);
        if (ins->workers > 0) {
            ins->threads = calloc(ins->workers, sizeof(pthread_t));
            for (int w = 0; w < ins->workers; w++) pthread_create(&ins->threads[w], NULL, worker_main, ins);
        }
    }
    printf("started\n");
    fflush(stdout);

    while (!exit_signal) {
        if (!input_done && !ingest_one()) input_done = 1;
        run_due_retries(0);
        if (input_done) {
            pthread_mutex_lock(&mu);
            if (exit_when_done && pending == 0) exit_signal = 1;
            if (!exit_signal) {
                wait_changed();
            }
            pthread_mutex_unlock(&mu);
        }
    }

    /* Graceful stop: no more input, pending retries now, keep flushing up to Grace seconds. */
    host_log_print(3, NULL, 0, "[engine] service will shutdown in max %d seconds", grace);
    run_due_retries(1);
    double deadline = now_s() + grace;
    for (;;) {
        run_due_retries(0);
        pthread_mutex_lock(&mu);
        long p = pending;
        if (p > 0 && (grace < 0 || now_s() < deadline)) {
            wait_changed();
            pthread_mutex_unlock(&mu);
            continue;
        }
        pthread_mutex_unlock(&mu);
        if (p > 0) host_log_print(2, NULL, 0, "[engine] %ld tasks still pending after the grace period", p);
        break;
    }

    /* flb_output_exit: per instance in order, join its workers, PreExit, ExitCtx (or Exit). */
    for (int i = 0; i < nouts; i++) {
        struct output_instance *ins = &outs[i];
        if (ins->workers > 0) {
            pthread_mutex_lock(&mu);
            ins->quitting = 1;
            pthread_cond_broadcast(&ins->cond);
            pthread_mutex_unlock(&mu);
            for (int w = 0; w < ins->workers; w++) pthread_join(ins->threads[w], NULL);
        }
        if (cb_pre_exit) cb_pre_exit(0);
        if (P.cb_exit_ctx) P.cb_exit_ctx(ins->ctx->remote_context);
        else if (P.cb_exit) P.cb_exit();
        free(ins->ctx);
        ins->ctx = NULL;
    }
    return NULL;
}

/* This process's own peak RSS (VmHWM). getrusage's maxrss is no good here: exec carries over the RSS the
 * parent had when it forked us. */
static long peak_rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f)) {
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) break;
    }
    if (f) fclose(f);
    return kb;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The p-th percentile (nearest rank) of the flush callbacks' durations, in microseconds; -1 without flushes. */
static long duration_us(double p) {
    if (n_durations == 0) return -1;
    long rank = (long)(p / 100 * n_durations + 0.999999);
    if (rank < 1) rank = 1;
    return (long)(durations[rank - 1] * 1e6);
}

int main(int argc, char **argv) {
    const char *so = NULL, *conf = NULL, *in = NULL, *abi = "4";
    int opt;
    while ((opt = getopt(argc, argv, "p:c:i:xa:")) != -1) {
        switch (opt) {
        case 'p': so = optarg; break;
        case 'c': conf = optarg; break;
        case 'i': in = optarg; break;
        case 'x': exit_when_done = 1; break;
        case 'a': abi = optarg; break;
        default:
            fprintf(stderr, "usage: %s -p plugin.so -c fluent-bit.conf [-i input|-] [-x] [-a 4|5.1.1]\n", argv[0]);
            return 2;
        }
    }
    int abi_511 = strcmp(abi, "5.1.1") == 0;
    if (!abi_511 && strcmp(abi, "4") != 0) die("-a takes 4 or 5.1.1, not %s", abi);
    if (!so || !conf) die("-p and -c are required");
    if (!in) input_done = 1;
    else if (strcmp(in, "-") == 0) input = stdin;
    else if (!(input = fopen(in, "rb"))) die("cannot open %s: %s", in, strerror(errno));
    srand((unsigned)time(NULL) ^ (unsigned)getpid());

    /* Fluent Bit installs these with signal() before any plugin is loaded. */
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGHUP, on_signal);
    signal(SIGQUIT, on_signal);

    void *h = dlopen(so, RTLD_LAZY);
    if (!h) die("dlopen %s: %s", so, dlerror());
    int (*pre_register)(int) = (int (*)(int))dlsym(h, "FLBPluginPreRegister");
    int (*reg)(struct flb_plugin_proxy_def *) = (int (*)(struct flb_plugin_proxy_def *))dlsym(h, "FLBPluginRegister");
    void (*unreg)(struct flb_plugin_proxy_def *) = (void (*)(struct flb_plugin_proxy_def *))dlsym(h, "FLBPluginUnregister");
    if (!reg) die("%s does not export FLBPluginRegister", so);

    /* v4.x: flb_malloc of the 32-byte def, not zeroed, followed by guard bytes. v5.1.1: flb_calloc of 48 bytes. */
    unsigned char *mem = malloc(sizeof(struct flb_plugin_proxy_def_511) + DEF_GUARD);
    struct flb_plugin_proxy_def *def = (struct flb_plugin_proxy_def *)mem;
    size_t def_size = abi_511 ? sizeof(struct flb_plugin_proxy_def_511) : sizeof *def;
    memset(mem, 0xA5, sizeof(struct flb_plugin_proxy_def_511) + DEF_GUARD);
    if (abi_511) memset(mem, 0, def_size);
    if (pre_register && pre_register(0) == -1) die("FLBPluginPreRegister refused to load");
    if (reg(def) == -1) die("FLBPluginRegister failed");
    for (size_t i = def_size; i < sizeof(struct flb_plugin_proxy_def_511) + DEF_GUARD; i++)
        if (mem[i] != 0xA5) die("FLBPluginRegister wrote byte %zu, past the %zu-byte def of Fluent Bit %s", i, def_size, abi);
    if (def->proxy != FLB_PROXY_GOLANG || def->type != FLB_PROXY_OUTPUT_PLUGIN) die("not a Go output plugin");
    if (abi_511) {
        struct flb_plugin_proxy_def_511 *d = (struct flb_plugin_proxy_def_511 *)def;
        /* This host does not reproduce Fluent Bit's key check, so a plugin that sets a config map is refused. */
        if (d->config_map) die("the plugin set config_map, whose key check this host does not reproduce");
        printf("registered abi=5.1.1 event_type=%d config_map=none\n", d->event_type);
        fflush(stdout);
    }

    P.name = strdup(def->name);
    P.cb_init = (int (*)(struct flbgo_output_plugin *))dlsym(h, "FLBPluginInit");
    P.cb_flush = (int (*)(const void *, size_t, const char *))dlsym(h, "FLBPluginFlush");
    P.cb_flush_ctx = (int (*)(void *, const void *, size_t, char *))dlsym(h, "FLBPluginFlushCtx");
    P.cb_exit = (int (*)(void))dlsym(h, "FLBPluginExit");
    P.cb_exit_ctx = (int (*)(void *))dlsym(h, "FLBPluginExitCtx");
    cb_pre_run = (int (*)(int))dlsym(h, "FLBPluginOutputPreRun");
    cb_pre_exit = (void (*)(int))dlsym(h, "FLBPluginOutputPreExit");
    if (!P.cb_init) die("%s does not export FLBPluginInit", so);
    if (!P.cb_flush && !P.cb_flush_ctx) die("%s exports no flush callback", so);

    load_config(conf, def->name);

    pthread_t pipeline;
    void *failed = NULL;
    pthread_create(&pipeline, NULL, pipeline_main, NULL);
    pthread_join(pipeline, &failed);

    if (unreg) unreg(def);
    free(mem);
    dlclose(h);
    qsort(durations, n_durations, sizeof *durations, cmp_double);
    printf("summary chunks=%ld ok=%ld retry=%ld error=%ld dropped=%ld pending=%ld peak_rss_kb=%ld flush_us_p50=%ld "
           "flush_us_p99=%ld flush_us_max=%ld\n",
           n_chunks, n_ok, n_retry, n_error, n_dropped, pending, peak_rss_kb(), duration_us(50), duration_us(99), duration_us(100));
    fflush(stdout);
    return failed ? 1 : 0;
}
