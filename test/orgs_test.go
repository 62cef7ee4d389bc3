package test

import (
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// deadLetterReasons reads the dead-letter file of a Store_Dir and returns the reasons given for each event id.
func (e *env) deadLetterReasons(store string) map[string][]string {
	out := map[string][]string{}
	for _, d := range e.deadLettersIn(store) {
		rec, _ := d["record"].(map[string]any)
		id, _ := rec["id"].(string)
		reason, _ := d["reason"].(string)
		out[id] = append(out[id], reason)
	}
	return out
}

// TestOneOutputPerOrganisation: two customers, one [OUTPUT] each with Org_ID and Match audit.*, as the old
// example had it, plus records of a third organisation that neither serves. Each bucket receives exactly its
// own organisation's records; the third organisation's are delivered nowhere, kept once in the dead-letter
// files and reported.
func TestOneOutputPerOrganisation(t *testing.T) {
	e := newEnv(t)
	a, b := e.addCustomer("custa"), e.addCustomer("custb")
	const orgA, orgB, orgC = "3f7539ad-7f8b-4688-aee0-b9dbf2db728e", "9b2d6c1e-41a7-4f0e-8c55-2f1e7a0d3b64", "c0ffee00-0000-4000-8000-000000000003"
	output := func(org string, c customer, store string) map[string]string {
		return map[string]string{"Org_ID": org, "Bucket": c.bucket, "Role_ARN": c.roleARN, "External_ID": c.externalID,
			"Unlisted_Orgs": "", "Store_Dir": filepath.Join(e.dir, store), "Status_Interval": "1s"}
	}
	conf := e.configN("per-org.conf", output(orgA, a, "store-a"), output(orgB, b, "store-b"))
	rng := rand.New(rand.NewPCG(21, 22))
	events := genEventsFor(t, 600, rng, "ev-", []string{orgA, orgB, orgC})
	r := e.runToEnd(conf, e.input("input.chunks", chunkEvents(events, rng, 20)))
	if r.ExitCode != 0 || r.Summary("error") != 0 || r.Summary("dropped") != 0 {
		t.Fatalf("host: exit %d, %s", r.ExitCode, r.Stdout[len(r.Stdout)-1])
	}
	inA, inB, inPlatform := e.bucketRecords(a.bucket), e.bucketRecords(b.bucket), e.bucketRecords(e.p.Bucket)
	kept := e.deadLetterReasons("store-a")
	for id, reasons := range e.deadLetterReasons("store-b") {
		kept[id] = append(kept[id], reasons...)
	}
	startRace := 0
	for _, ev := range events {
		switch ev.org {
		case orgA, orgB:
			own, other := inA, inB
			if ev.org == orgB {
				own, other = inB, inA
			}
			if len(own[ev.id]) != 1 || len(other[ev.id]) != 0 {
				t.Errorf("%s of %s: %d times in its own bucket, %d in the other customer's", ev.id, ev.org, len(own[ev.id]), len(other[ev.id]))
			}
			// Before an output has flushed a tag, the other cannot know that it receives it: it keeps a copy.
			for _, reason := range kept[ev.id] {
				if !strings.Contains(reason, "which had not flushed tag") {
					t.Errorf("%s of %s was kept: %s", ev.id, ev.org, reason)
				}
			}
			startRace += len(kept[ev.id])
		case orgC:
			if len(inA[ev.id])+len(inB[ev.id])+len(inPlatform[ev.id]) != 0 || len(kept[ev.id]) != 1 {
				t.Errorf("%s of the unserved organisation: %d in bucket a, %d in bucket b, %d in the platform's, kept %d times, want 0, 0, 0, 1",
					ev.id, len(inA[ev.id]), len(inB[ev.id]), len(inPlatform[ev.id]), len(kept[ev.id]))
			}
		}
	}
	for _, want := range []string{
		`organisation ` + orgC + ` has a destination in no wivaudit output that receives tag "audit.`,
		"kept in the dead-letter file (no output known to receive their tag serves them)",
	} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("no log line says %q", want)
		}
	}
	stopped := regexp.MustCompile(`stopped: .*records of other organisations: ([0-9]+) left to the outputs that serve them, ([0-9]+) kept`).FindAllStringSubmatch(r.Stderr, -1)
	if len(stopped) != 2 {
		t.Errorf("%d stopped lines count records of other organisations, want 2:\n%s", len(stopped), tail(r.Stderr, 10))
	}
	t.Logf("%d events of 3 organisations; the unserved one's %d records kept once; %d records of a served organisation also kept, as copies, by the other output before it had seen the first flush the tag",
		len(events), len(events)/3, startRace)
}

// TestDestinationsFileCaseAndUnlisted: a destinations file lists an organisation in lower case; its records
// arrive in upper case and reach its bucket under the file's spelling. Another organisation is not listed: it
// is delivered nowhere, held in Store_Dir, and reported.
func TestDestinationsFileCaseAndUnlisted(t *testing.T) {
	e := newEnv(t)
	a := e.addCustomer("custa")
	const orgA, orgC = "3f7539ad-7f8b-4688-aee0-b9dbf2db728e", "c0ffee00-0000-4000-8000-000000000003"
	file := filepath.Join(e.dir, "destinations.json")
	writeDestinations(t, file, []destEntry{{Org: orgA, Bucket: a.bucket, RoleARN: a.roleARN, ExternalID: a.externalID}})
	conf := e.config("file.conf", map[string]string{"Destinations_File": file, "Unlisted_Orgs": "", "Bucket": "",
		"Role_ARN": "", "External_ID": "", "Hold_Retry_Interval": "1s", "Upload_Timeout": "1s", "Shutdown_Timeout": "5s"})
	rng := rand.New(rand.NewPCG(23, 24))
	events := genEventsFor(t, 300, rng, "ev-", []string{strings.ToUpper(orgA), orgC})
	r := e.runToEnd(conf, e.input("input.chunks", chunkEvents(events, rng, 20)))
	if r.ExitCode != 0 || r.Summary("error") != 0 {
		t.Fatalf("host: exit %d, %s", r.ExitCode, r.Stdout[len(r.Stdout)-1])
	}
	inA, inPlatform := e.bucketRecords(a.bucket), e.bucketRecords(e.p.Bucket)
	for _, ev := range events {
		switch {
		case ev.org != orgC && (len(inA[ev.id]) != 1 || !strings.HasPrefix(inA[ev.id][0], orgA+"/")):
			t.Errorf("%s of %s is at %v in its bucket, want once under %s/", ev.id, ev.org, inA[ev.id], orgA)
		case ev.org == orgC && len(inA[ev.id])+len(inPlatform[ev.id]) != 0:
			t.Errorf("%s of the unlisted organisation was delivered", ev.id)
		}
	}
	held := 0
	for _, dir := range []string{"batches", "logs"} {
		files, _ := filepath.Glob(filepath.Join(e.dir, "store", dir, orgC+"~*"))
		held += len(files)
	}
	if held == 0 {
		t.Errorf("the unlisted organisation's records are not in Store_Dir")
	}
	for _, want := range []string{
		"organisation " + orgC + " is not in Destinations_File: its records are held in Store_Dir until it is (Unlisted_Orgs hold)",
		"organisation " + orgC + " has no entry in Destinations_File yet (Unlisted_Orgs hold)",
		"records of other organisations: 0 left to the outputs that serve them, 0 kept in the dead-letter file (no output known to receive their tag serves them), 150 held (not in Destinations_File)",
	} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("no log line says %q:\n%s", want, tail(r.Stderr, 10))
		}
	}
}

// TestArchiveKeepsACopyOfEveryOrganisation: the layout of examples/multi-tenant.yaml, one output for the
// customers through a destinations file and one for the platform's archive, both with Match audit.*. A listed
// organisation's records reach its customer's bucket and the archive, once each; an unlisted one's only the
// archive (the customers' output holds them).
func TestArchiveKeepsACopyOfEveryOrganisation(t *testing.T) {
	e := newEnv(t)
	a := e.addCustomer("custa")
	const orgA, orgC = "3f7539ad-7f8b-4688-aee0-b9dbf2db728e", "c0ffee00-0000-4000-8000-000000000003"
	file := filepath.Join(e.dir, "destinations.json")
	writeDestinations(t, file, []destEntry{{Org: orgA, Bucket: a.bucket, RoleARN: a.roleARN, ExternalID: a.externalID}})
	customers := map[string]string{"Destinations_File": file, "Unlisted_Orgs": "hold", "Bucket": "", "Role_ARN": "",
		"External_ID": "", "Store_Dir": filepath.Join(e.dir, "store-customers"), "Shutdown_Timeout": "2s"}
	archive := map[string]string{"Store_Dir": filepath.Join(e.dir, "store-archive")}
	conf := e.configN("multi-tenant.conf", customers, archive)
	rng := rand.New(rand.NewPCG(25, 26))
	events := genEventsFor(t, 300, rng, "ev-", []string{orgA, orgC})
	r := e.runToEnd(conf, e.input("input.chunks", chunkEvents(events, rng, 20)))
	if r.ExitCode != 0 || r.Summary("error") != 0 {
		t.Fatalf("host: exit %d, %s", r.ExitCode, r.Stdout[len(r.Stdout)-1])
	}
	inA, inArchive := e.bucketRecords(a.bucket), e.bucketRecords(e.p.Bucket)
	for _, ev := range events {
		wantA := 0
		if ev.org == orgA {
			wantA = 1
		}
		if len(inA[ev.id]) != wantA || len(inArchive[ev.id]) != 1 {
			t.Errorf("%s of %s: %d times in the customer's bucket, %d in the archive; want %d and 1",
				ev.id, ev.org, len(inA[ev.id]), len(inArchive[ev.id]), wantA)
		}
	}
}
