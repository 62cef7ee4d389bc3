package plugin

import (
	"fmt"
	"time"

	"github.com/wiv/out_wivaudit/metrics"
	"github.com/wiv/out_wivaudit/upload"
)

// statusReport logs a status line every Status_Interval, unless nothing happened since the last one and
// nothing waits for upload, and at the first tick when batches wait.
type statusReport struct {
	next time.Time
	last string
}

func (s *statusReport) maybe(in *Instance, now time.Time) {
	switch {
	case in.cfg.StatusInterval == 0:
		return
	case s.next.IsZero():
		// The first line comes at once when batches wait (a restart found them): what waits, and how old.
		counters, waiting := in.counters(), in.queue.len()
		s.next, s.last = now.Add(in.cfg.StatusInterval), counters
		if waiting > 0 {
			in.log.logf(LevelInfo, "status: %s", in.status(counters, waiting))
		}
		return
	case now.Before(s.next):
		return
	}
	s.next = now.Add(in.cfg.StatusInterval)
	counters, waiting := in.counters(), in.queue.len()
	if counters == s.last && waiting == 0 {
		return
	}
	s.last = counters
	in.log.logf(LevelInfo, "status: %s", in.status(counters, waiting))
}

// counters sums up what the instance did since it started.
func (in *Instance) counters() string {
	discarded := ""
	if n := in.discarded.Load(); n > 0 {
		discarded = fmt.Sprintf(" (%d discarded: the dead-letter file was full)", n)
	}
	lost := ""
	if n := in.lost.Load(); n > 0 {
		lost = fmt.Sprintf(", %d batches lost (their files were deleted from Store_Dir)", n)
	}
	return fmt.Sprintf("%d records accepted, %d rejected%s, %d delivered in %d objects; failed upload attempts: %d retriable, %d credentials, %d refused; %d key conflicts (412), %d role re-assumptions, %d batches quarantined%s%s",
		in.accepted.Load(), in.rejected.Load(), discarded, in.delivered.Load(), in.objects.Load(),
		in.failed[upload.Retriable].Load(), in.failed[upload.Credentials].Load(), in.failed[upload.Misconfigured].Load(),
		in.conflicts.Load(), in.reassumed.Load(), in.quarantined.Load(), lost, in.dests.counters())
}

// status adds what waits now: sealed batches, the age of the oldest undelivered record (sealed or not), and
// the disk used.
func (in *Instance) status(counters string, waiting int) string {
	ms, ok := in.queue.oldest()
	if logMs, logOK := in.store.OldestPending(); logOK && (!ok || logMs < ms) {
		ms, ok = logMs, true
	}
	oldest := ""
	if ok {
		oldest = fmt.Sprintf("; the oldest undelivered record arrived %s ago", in.now().Sub(time.UnixMilli(ms)).Round(time.Second))
	}
	used, _ := in.store.Usage()
	file, _ := in.dests.fileStatus()
	return fmt.Sprintf("%s; %d sealed batches waiting for upload%s; %d bytes buffered in Store_Dir%s%s", counters, waiting, oldest, used,
		notOK(in.destinations()), fileFailing(file))
}

// fileFailing says, for the status line, that the destinations file cannot be used: its error is logged once
// per version, and this keeps saying it. "" when it can be used, or there is none.
func fileFailing(f *metrics.DestinationsFile) string {
	if f == nil || !f.Failing {
		return ""
	}
	return fmt.Sprintf("; Destinations_File cannot be used since %s, delivering with the version loaded at %s",
		f.FailingSince.Format(time.RFC3339), f.LoadedAt.Format(time.RFC3339))
}

// checkUsage logs when the store crosses 80 % and 95 % of Store_Dir_Limit_Size, and when it is back under.
func (in *Instance) checkUsage() {
	used, limit := in.store.Usage()
	if limit == 0 {
		return
	}
	level := int32(0)
	switch {
	case used*100 >= limit*95:
		level = 2
	case used*100 >= limit*80:
		level = 1
	}
	old := in.usageLevel.Swap(level)
	switch {
	case level > old:
		in.log.logf(LevelWarn, "Store_Dir holds %d of %d bytes (Store_Dir_Limit_Size), over %d%%; at the limit flushes are retried until uploads free space",
			used, limit, map[int32]int{1: 80, 2: 95}[level])
	case level < old && level == 0:
		in.log.logf(LevelInfo, "Store_Dir is back under 80%% of Store_Dir_Limit_Size (%d of %d bytes)", used, limit)
	}
}

// checkDiskKnown logs, once, that the free space of Store_Dir's file system cannot be read: flushes are then not
// refused before the disk is full, and a full disk shows as write errors.
func (in *Instance) checkDiskKnown() {
	if n, first := in.store.DiskErrors(); n > 0 && in.diskUnknown.CompareAndSwap(false, true) {
		in.log.logf(LevelWarn, "cannot read the free space of Store_Dir's file system (%v); flushes are not refused before it is full, and its reserve for delivery is not kept", first)
	}
}
