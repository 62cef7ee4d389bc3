// Command trial is make trial: the plugin tried locally, by hand, for as long as one likes. It starts moto (S3,
// STS, IAM, KMS, CloudFormation) on loopback with IAM checks on; two customers set up their bucket and role with
// the customer kit itself (deploy/customer: one with the CloudFormation template, one with the Terraform module),
// with the moto workarounds applied openly; it writes the destinations file, a digest signing key and a Fluent
// Bit configuration into a folder that stays (build/trial), runs the plugin in Fluent Bit (FLUENT_BIT) or in the
// test host, sends the sample events, waits until both customers have them and a signed digest lists them, then
// prints what to try next and keeps everything running until Ctrl-C. With -once it runs each printed command
// instead (verify must pass for both customers, the events sent again must arrive) and stops.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/wiv/out_wivaudit/test/backend"
	"github.com/wiv/out_wivaudit/test/customerkit"
)

type options struct {
	host, plugin, cmd, fluentBit, dir, events, kit string
	once                                           bool
	digestInterval                                 time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.host, "host", "build/flbhost", "the Fluent Bit test host, used when -fluent-bit is empty")
	flag.StringVar(&o.plugin, "plugin", "build/out_wivaudit.so", "the plugin")
	flag.StringVar(&o.cmd, "cmd", "build/wivaudit", "the wivaudit command")
	flag.StringVar(&o.fluentBit, "fluent-bit", os.Getenv("FLUENT_BIT"), "a Fluent Bit binary to run the plugin in (default $FLUENT_BIT; empty: the test host)")
	flag.StringVar(&o.dir, "dir", "build/trial", "the trial's folder: configuration, store, logs; it stays after the trial (a previous trial's is replaced)")
	flag.StringVar(&o.events, "events", "examples/events", "the sample events: <tag>.jsonl files")
	flag.StringVar(&o.kit, "kit", "deploy/customer", "the customer setup kit")
	flag.BoolVar(&o.once, "once", false, "run every printed command (each must exit 0), then stop")
	flag.DurationVar(&o.digestInterval, "digest-interval", 10*time.Second, "Digest_Interval: how often each customer gets a signed digest")
	flag.Parse()
	// Ctrl-C on make trial | tee also ends tee: a write to the closed pipe must fail (EPIPE), not kill the trial
	// with SIGPIPE before it stops the plugin and moto. Notify, not Ignore: an ignored signal stays ignored in
	// the children the trial starts.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(os.Stderr, "trial: interrupted (%v); %s stays\n", err, display(o.dir))
		} else {
			fmt.Fprintln(os.Stderr, "trial:", err)
		}
		os.Exit(1)
	}
}

// trial is what the printed commands need to know.
type trial struct {
	cmd, events, storeDir, publicKey, logPath, metricsListen string
	intakePort                                               int
	moto                                                     *backend.Moto
	customers                                                []*customer
}

// marker names a folder as a trial's, which the next trial may replace.
const marker = ".wivaudit-trial"

// freshFolder empties a previous trial's folder (never another one) and marks it as the trial's.
func freshFolder(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	case len(entries) == 0:
	default:
		if _, err := os.Stat(filepath.Join(dir, marker)); err != nil {
			return fmt.Errorf("%s exists and is not a trial's folder (no %s in it): remove it or give another -dir", dir, marker)
		}
		fmt.Printf("replacing the previous trial's folder %s\n", display(dir))
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, marker), []byte("make trial's folder: the next trial replaces it\n"), 0o600)
}

func run(ctx context.Context, o options) error {
	began := time.Now()
	dir, err := filepath.Abs(o.dir)
	if err != nil {
		return err
	}
	if err := freshFolder(dir); err != nil {
		return err
	}
	mirror, err := customerkit.TerraformMirror()
	if err != nil {
		return err
	}
	t := &trial{cmd: o.cmd, events: o.events, storeDir: filepath.Join(dir, "store"), logPath: filepath.Join(dir, "fluent-bit.log"),
		publicKey: filepath.Join(dir, "wivaudit-digest-public-key.pem")}

	step("Starting moto (S3, STS, IAM, KMS, CloudFormation) on loopback, with IAM checks on")
	if err := os.Mkdir(filepath.Join(dir, "moto"), 0o700); err != nil {
		return err
	}
	if t.moto, err = backend.Start(filepath.Join(dir, "moto")); err != nil {
		return err
	}
	defer t.moto.Stop()
	p, err := t.moto.SetupPlatform(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("moto listens on %s (its log: %s); the plugin, the kit and the printed commands reach it at %s, the trial's S3 front, "+
		"which makes conditional writes atomic as S3 does\n", t.moto.Server, display(filepath.Join(dir, "moto", "moto.log")), t.moto.URL)
	fmt.Printf("the platform's identity is %s, allowed only sts:AssumeRole\n", p.UserARN)

	step(fmt.Sprintf("Two customers set up their bucket and role with the customer kit (%s), trusting that identity", o.kit))
	fmt.Printf("(Terraform takes the provider from the mirror %s, by its CLI configuration %s)\n",
		mirror, display(filepath.Join(dir, "terraform", "terraform.rc")))
	if t.customers, err = deploy(ctx, t.moto, p, o.kit, dir, mirror); err != nil {
		return err
	}
	for _, c := range t.customers {
		fmt.Printf("%s (org_id %s), by %s: bucket %s, role %s\n", c.Name, c.ID, c.how, c.dest.Bucket, c.dest.RoleARN)
		for _, w := range c.workarounds {
			fmt.Printf("    %s\n", w)
		}
	}

	step("The platform's side: a destinations file, a digest signing key, a Fluent Bit configuration")
	conf, err := platformSide(t, dir, o.digestInterval)
	if err != nil {
		return err
	}
	plugin, err := runPlugin(ctx, o, t, conf, p.Env())
	if err != nil {
		return err
	}
	stopped := false
	defer func() {
		if !stopped {
			plugin.stop(time.Minute)
		}
	}()
	views, ids, err := deliverSamples(ctx, o, t, plugin)
	if err != nil {
		return err
	}

	wd, _ := os.Getwd()
	step(fmt.Sprintf("The trial is up after %s. Try, from %s:", time.Since(began).Round(time.Second), wd))
	steps := nextSteps(t)
	printSteps(steps)
	fmt.Printf("\n  # or edit %s: the plugin reloads it within 10 s\n", display(filepath.Join(dir, "destinations.json")))
	if o.once {
		if err := runSteps(ctx, steps, views, plugin, ids); err != nil {
			return err
		}
	} else {
		fmt.Printf("\nEverything runs until Ctrl-C, which stops the plugin, then moto; %s stays.\n", display(dir))
		select {
		case <-ctx.Done():
			fmt.Println()
		case <-plugin.exited:
			return fmt.Errorf("the plugin's process ended (exit %d): see %s", plugin.cmd.ProcessState.ExitCode(), display(t.logPath))
		}
	}

	step("Stopping the plugin (it uploads what it holds), then moto")
	stopped = true
	code := plugin.stop(time.Minute)
	t.moto.Stop()
	fmt.Printf("stopped; %s stays: its configuration, destinations file, Store_Dir (store/), logs\n", display(dir))
	if code != 0 {
		return fmt.Errorf("the plugin's process exited with %d: see %s", code, display(t.logPath))
	}
	return nil
}

func step(s string) { fmt.Printf("\n==> %s\n", s) }
