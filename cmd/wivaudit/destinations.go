package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/wiv/out_wivaudit/conf"
)

func runValidate(e *env, c *command, args []string) int {
	fs := flags(e, c)
	region := fs.String("region", "", "the [OUTPUT] Region, for entries without one (default "+conf.DefaultRegion+")")
	prefix := fs.String("key-prefix", "", "the [OUTPUT] Key_Prefix, for entries without one")
	pos, code, ok := parse(e, fs, args, "FILE")
	if !ok {
		return code
	}
	file := pos[0]
	abs, err := filepath.Abs(file)
	if err != nil {
		return usageError(e, fs, "%v", err)
	}
	cfg, err := conf.Parse(conf.Map{"Destinations_File": abs, "Region": *region, "Key_Prefix": *prefix})
	if err != nil {
		for _, p := range problems(err) {
			fmt.Fprintf(e.stderr, "%s: %s\n", fs.Name(), inFlags(p.Error(), checkFlags))
		}
		return exitUsage
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return usageError(e, fs, "%v", err)
	}
	dests, err := conf.ParseDestinations(data, cfg)
	if err != nil {
		found := problems(err)
		for _, p := range found {
			fmt.Fprintf(e.stdout, "%s: %v\n", file, p)
		}
		fmt.Fprintf(e.stdout, "%d problems: the plugin would not start with this file, and a running one keeps the destinations it had\n", len(found))
		return exitRefused
	}
	keys := make([]string, 0, len(dests))
	for k := range dests {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(e.stdout, "%s: %s\n", dests[k].OrgID, dests[k])
	}
	fmt.Fprintf(e.stdout, "%d organisations, valid\n", len(dests))
	return exitOK
}
