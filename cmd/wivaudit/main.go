// Command wivaudit is the support and operator tool of out_wivaudit: it checks a customer's destination as the
// plugin would use it, validates a destinations file offline, and reads or replays what a Store_Dir holds.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Exit codes, for scripts.
const (
	exitOK      = 0
	exitRefused = 1 // check: the destination refuses (the customer's side); otherwise: the input has problems, or the work could not be done
	exitUsage   = 2 // unknown command or flag, missing or invalid argument
	exitOurs    = 3 // check: our side: no AWS credentials, credentials refused, or one of our settings
	exitRetry   = 4 // check: network, timeout or an unexpected answer: try again later
)

// env is what a subcommand works with; tests give their own.
type env struct {
	ctx            context.Context
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time
}

// command is one subcommand: its words, arguments, one line of help, and what it does.
type command struct {
	name, args, summary string
	run                 func(e *env, c *command, args []string) int
}

var commands []*command

func init() {
	commands = []*command{
		{"check", "--org ORG (--bucket B --role-arn R [--external-id-file F] | --destinations FILE) [--write-probe] [flags]",
			"assume the destination's role with its External ID and, with --write-probe, write one small probe object; on failure name the customer guide's step", runCheck},
		{"destinations validate", "FILE [--region R] [--key-prefix P]",
			"validate a destinations file as the plugin does, offline, every problem at once", runValidate},
		{"store inspect", "DIR [--json]",
			"what a Store_Dir holds per organisation and kind (read-only, safe while the plugin runs)", runInspect},
		{"store requeue", "DIR [--org ORG]",
			"put quarantined batches back for upload at the plugin's next start (the plugin must be stopped)", runRequeue},
		{"store ledger", "DIR [--org ORG] [--from T] [--to T] [--json]",
			"the delivery ledger: every object delivered (or unconfirmed after a 412), when, where and with what SHA-256 (read-only)", runLedger},
		{"digest keygen", "FILE",
			"create a digest signing key for Digest_Signing_Key (readable by its owner only; an existing file is never replaced)", runKeygen},
		{"digest public-key", "--key FILE",
			"print the public key and fingerprint of a digest signing key: what customers verify digests with", runPublicKey},
		{"verify", "--bucket B --org ORG --public-key FILE [--prefix P] [--from T] [--to T] [--grace D] [--region R] [--endpoint URL [--allow-plain-http]]",
			"customer side, with your own s3:ListBucket and s3:GetObject: check the signed digests, their chain and every object they list, and report objects no digest lists", runVerify},
		{"help", "", "this text", func(e *env, _ *command, _ []string) int { usage(e.stdout); return exitOK }},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: wivaudit COMMAND [arguments]; wivaudit COMMAND -h for its flags")
	fmt.Fprintln(w)
	for _, c := range commands {
		fmt.Fprintf(w, "  %s\n      %s\n", strings.TrimSpace(c.name+" "+c.args), c.summary)
	}
	fmt.Fprint(w, `
Exit codes:
  0  ok
  1  check: the destination refuses: the fix is on the customer's side (the guide step is printed);
     destinations validate: the file has problems; store: the store could not be read or changed
     (requeue: the plugin is running on it); digest: the key file could not be written or read;
     verify: problems found (a PROBLEM line names each digest or object)
  2  usage: unknown command or flag, missing or invalid argument or setting; verify: could not verify
     (the bucket could not be listed or an object read: CANNOT VERIFY lines)
  3  check: our side: no AWS credentials, credentials refused, or a setting of ours (Canned_ACL,
     Conditional_Writes)
  4  check: network error, timeout or an unexpected answer: try again later
`)
}

// run finds the subcommand named by the first one or two words of args and runs it.
func run(e *env, args []string) int {
	for _, c := range commands {
		words := strings.Fields(c.name)
		if len(args) >= len(words) && strings.Join(args[:len(words)], " ") == c.name {
			return c.run(e, c, args[len(words):])
		}
	}
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
		usage(e.stdout)
		return exitOK
	}
	if len(args) > 0 {
		fmt.Fprintf(e.stderr, "wivaudit: unknown command %q\n", strings.Join(args[:min(2, len(args))], " "))
	}
	usage(e.stderr)
	return exitUsage
}

func main() {
	os.Exit(run(&env{ctx: context.Background(), stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, now: time.Now}, os.Args[1:]))
}
