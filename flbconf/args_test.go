package flbconf

import (
	"strings"
	"testing"
)

func TestConfigPath(t *testing.T) {
	for _, c := range []struct {
		args string // space-separated
		want string // "" for none
	}{
		{"-c /etc/fluent-bit/fluent-bit.conf", "/etc/fluent-bit/fluent-bit.conf"},
		{"-e /p/out_wivaudit.so -c fluent-bit.conf", "fluent-bit.conf"},
		{"-c/etc/fb.yaml", "/etc/fb.yaml"},
		{"--config /etc/fb.conf", "/etc/fb.conf"},
		{"--config=/etc/fb.conf", "/etc/fb.conf"},
		{"--conf=/etc/fb.conf", "/etc/fb.conf"}, // getopt_long takes an unambiguous abbreviation
		{"--co=/etc/fb.conf", ""},               // config, coro_stack_size: ambiguous
		{"-vvc /etc/fb.conf", "/etc/fb.conf"},   // flags before c in one word
		{"-qc/etc/fb.conf", "/etc/fb.conf"},
		{"-c a.conf -c b.conf", "b.conf"}, // the last wins
		{"-i dummy -p tag=-c -o stdout", ""},
		{"-p -c -o stdout", ""}, // -p takes "-c" as its argument
		{"-e -c", ""},
		{"--workdir /etc/fb -c fluent-bit.conf", "fluent-bit.conf"},
		{"--workdir=-c x.conf", ""},
		{"--supervisor --config x.conf", "x.conf"},
		{"--enable-hot-reload -c x.conf", "x.conf"},
		{"-Y -c x.conf -H", "x.conf"},
		{"x.conf -c y.conf", "y.conf"}, // getopt_long moves operands aside
		{"-- -c x.conf", ""},
		{"-c", ""},
		{"--config", ""},
		{"", ""},
		// The test host's command line: -p takes the plugin, -x and -a are not Fluent Bit's.
		{"-p /b/out_wivaudit.so -c /tmp/t/bad.conf -i in -x -a 5.1.1", "/tmp/t/bad.conf"},
	} {
		got, ok := ConfigPath(strings.Fields(c.args))
		if got != c.want || ok != (c.want != "") {
			t.Errorf("%q: got %q %v, want %q", c.args, got, ok, c.want)
		}
	}
}
