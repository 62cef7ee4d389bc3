// Command out_wivaudit is the Fluent Bit output plugin "wivaudit", built with -buildmode=c-shared. This file
// is the cgo edge: the exports Fluent Bit calls, each recovering panics, and nothing else.
package main

/*
#include <stdlib.h>

// The head of Fluent Bit's struct flb_api (v2.0+): property getters, then the logger and its level check.
struct wiv_flb_api {
    void *output_get_property;
    void *input_get_property;
    void *output_get_cmt_instance;
    void *input_get_cmt_instance;
    void (*log_print)(int, const char *, int, const char *, ...);
    void *input_log_check;
    int (*output_log_check)(void *, int);
};

// The fields of struct flbgo_output_plugin that Init reads.
struct wiv_flbgo_plugin {
    char *name;
    struct wiv_flb_api *api;
    void *o_ins;
    void *context;
};

static void wiv_log(struct wiv_flb_api *api, void *ins, int level, const char *msg) {
    if (api->output_log_check != NULL && !api->output_log_check(ins, level)) {
        return;
    }
    api->log_print(level, NULL, 0, "%s", msg);
}
*/
import "C"

import (
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"unsafe"

	"github.com/fluent/fluent-bit-go/output"

	"github.com/wiv/out_wivaudit/conf"
	"github.com/wiv/out_wivaudit/keycheck"
	"github.com/wiv/out_wivaudit/plugin"
)

// pluginName is the name [OUTPUT] sections give in Name.
const pluginName = "wivaudit"

var (
	mu        sync.Mutex
	instances = map[int]*plugin.Instance{}
	nextID    int
)

// flbSource reads [OUTPUT] properties; valid only during FLBPluginInit.
type flbSource struct{ p unsafe.Pointer }

func (s flbSource) Get(key string) string { return output.FLBPluginConfigKey(s.p, key) }

// logTo returns a logger bound to this instance's o_ins, captured at Init as the ABI requires. Each message
// becomes one line: Fluent Bit prefixes only the first line of a message with its time and level.
func logTo(p unsafe.Pointer) plugin.LogFunc {
	head := (*C.struct_wiv_flbgo_plugin)(p)
	api, ins := head.api, head.o_ins
	return func(level plugin.Level, msg string) {
		msg = strings.ReplaceAll(msg, "\n", " ")
		if api == nil || api.log_print == nil {
			fmt.Fprintln(os.Stderr, msg)
			return
		}
		cmsg := C.CString(msg)
		C.wiv_log(api, ins, C.int(level), cmsg)
		C.free(unsafe.Pointer(cmsg))
	}
}

// guard turns a panic into the given return code instead of killing Fluent Bit and every chunk it holds.
func guard(ret *int, code int, where string) {
	if r := recover(); r != nil {
		fmt.Fprintf(os.Stderr, "[wivaudit] panic in %s: %v\n%s", where, r, debug.Stack())
		*ret = code
	}
}

// FLBPluginRegister fills the first 32 bytes of Fluent Bit's registration struct, all that every version has.
// From 5.1.1 the struct also has a config_map (at offset 40) with which Fluent Bit refuses unknown keys, but
// up to 4.2.0 the struct is a 32-byte malloc, then 40 bytes, and nothing before Init tells the versions apart
// (PreRegister exists since 2.2, the API table did not change): writing it on an older version would corrupt
// Fluent Bit's heap, so it is left alone, and Init checks the keys against the configuration file instead.
//
//export FLBPluginRegister
func FLBPluginRegister(def unsafe.Pointer) (ret int) {
	defer guard(&ret, -1, "FLBPluginRegister")
	// Register runs again on a hot reload, before the new configuration's Inits: number them from 0 again,
	// as Fluent Bit does.
	mu.Lock()
	nextID = 0
	mu.Unlock()
	return output.FLBPluginRegister(def, pluginName, "Audit events to each organisation's S3 bucket as gzipped JSON arrays")
}

//export FLBPluginInit
func FLBPluginInit(p unsafe.Pointer) (ret int) {
	defer guard(&ret, output.FLB_ERROR, "FLBPluginInit")
	mu.Lock()
	id := nextID
	nextID++
	mu.Unlock()
	name := fmt.Sprintf("output:%s:%s.%d", pluginName, pluginName, id)
	log := logTo(p)
	// Fluent Bit does not refuse unknown keys of a Go plugin (see FLBPluginRegister): they are looked for in
	// the configuration file, and the settings line shows a misspelt key's setting as a default.
	keys := keycheck.Check(pluginName, id, flbSource{p})
	log(plugin.LevelInfo, fmt.Sprintf("[%s] %s", name, keys.Info))
	for _, w := range keys.Warnings {
		log(plugin.LevelWarn, fmt.Sprintf("[%s] %s", name, w))
	}
	cfg, err := conf.Parse(flbSource{p})
	if err != nil {
		log(plugin.LevelError, fmt.Sprintf("[%s] invalid configuration: %v", name, keys.Explain(err)))
		return output.FLB_ERROR
	}
	log(plugin.LevelInfo, fmt.Sprintf("[%s] %s", name, cfg))
	// The test hooks (WIVAUDIT_TEST_*) are read here and nowhere else; unset, they do nothing.
	var in *plugin.Instance
	hooks, err := plugin.TestHooksFromEnv()
	if err == nil {
		in, err = plugin.New(cfg, name, log, hooks)
	}
	if err != nil {
		log(plugin.LevelError, fmt.Sprintf("[%s] cannot start: %v", name, err))
		return output.FLB_ERROR
	}
	mu.Lock()
	instances[id] = in
	mu.Unlock()
	output.FLBPluginSetContext(p, id)
	return output.FLB_OK
}

func lookup(ctx unsafe.Pointer) (int, *plugin.Instance) {
	id, ok := output.FLBPluginGetContext(ctx).(int)
	if !ok {
		return -1, nil
	}
	mu.Lock()
	defer mu.Unlock()
	return id, instances[id]
}

//export FLBPluginFlushCtx
func FLBPluginFlushCtx(ctx, data unsafe.Pointer, length C.int, tag *C.char) (ret int) {
	defer guard(&ret, output.FLB_RETRY, "FLBPluginFlushCtx")
	_, in := lookup(ctx)
	if in == nil {
		fmt.Fprintln(os.Stderr, "[wivaudit] flush for an instance that did not initialise")
		return output.FLB_ERROR
	}
	// The chunk is read where Fluent Bit holds it, for the call only: Flush copies what it keeps (records,
	// rejected bytes) and nothing reads it once the call returns.
	if in.Flush(unsafe.Slice((*byte)(data), int(length)), C.GoString(tag)) == plugin.OK {
		return output.FLB_OK
	}
	return output.FLB_RETRY
}

//export FLBPluginExitCtx
func FLBPluginExitCtx(ctx unsafe.Pointer) (ret int) {
	defer guard(&ret, output.FLB_ERROR, "FLBPluginExitCtx")
	id, in := lookup(ctx)
	if in != nil {
		in.Close()
		mu.Lock()
		delete(instances, id)
		mu.Unlock()
	}
	return output.FLB_OK
}

// FLBPluginExit is only called by hosts without ExitCtx support; it closes every instance.
//
//export FLBPluginExit
func FLBPluginExit() (ret int) {
	defer guard(&ret, output.FLB_ERROR, "FLBPluginExit")
	mu.Lock()
	all := instances
	instances = map[int]*plugin.Instance{}
	mu.Unlock()
	for _, in := range all {
		in.Close()
	}
	return output.FLB_OK
}

//export FLBPluginUnregister
func FLBPluginUnregister(def unsafe.Pointer) {
	defer guard(new(int), 0, "FLBPluginUnregister")
	output.FLBPluginUnregister(def)
}

func main() {}
