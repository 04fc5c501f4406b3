package main

import (
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache"
)

func TestRun(t *testing.T) {
	baseline := runtime.NumGoroutine()
	var out strings.Builder
	if err := run(t.Context(), &out); err != nil {
		t.Fatalf("run: %v", err)
	}
	report := out.String()
	if t.Failed() {
		return
	}

	// Every goroutine the demo started, directly or through a policy, ends.
	// A cancelled race loser may take a moment to notice, so wait a little.
	for deadline := time.Now().Add(2 * time.Second); runtime.NumGoroutine() > baseline; {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines left running after run, want at most %d:\n%s",
				runtime.NumGoroutine(), baseline, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}

	t.Run("names every policy", func(t *testing.T) {
		for _, name := range []string{
			"SequentialReadPolicy{}",
			"ParallelReadPolicy{}",
			"RaceReadPolicy{}",
			"RaceReadPolicy{Loser: LoserCancel}",
			"RaceReadPolicy{HedgeAfter: 200µs}",
		} {
			if !strings.Contains(report, name) {
				t.Errorf("report does not name %s:\n%s", name, report)
			}
		}
	})

	t.Run("sequential L1 hits leave L2 not run", func(t *testing.T) {
		hits := 0
		for _, row := range tableRows(t, report) {
			if row["policy"] != "sequential" || row["source"] != "L1" {
				continue
			}
			hits++
			if row["L1"] != "hit" || row["L2"] != "not-run" {
				t.Errorf("sequential read of %s served by L1: L1 %s, L2 %s; want L1 hit, L2 not-run",
					row["key"], row["L1"], row["L2"])
			}
		}
		if hits == 0 {
			t.Errorf("no sequential read was served by L1:\n%s", report)
		}
	})
}

// A read that misses its deadline, as on a machine too busy to run it in
// time, is reported in its row and counted in the summary; the demo goes on.
func TestRunReportsReadsPastTheirDeadline(t *testing.T) {
	defer func(d time.Duration) { readTimeout = d }(readTimeout)
	readTimeout = time.Microsecond // shorter than either layer's round trip
	var out strings.Builder
	if err := run(t.Context(), &out); err != nil {
		t.Fatalf("run: %v", err)
	}
	report := out.String()
	rows := tableRows(t, report) // every read has its row
	late := strings.Count(report, "no answer within 1µs")
	if late == 0 || late > len(rows) {
		t.Fatalf("%d rows say the read had no answer in time, want between 1 and %d:\n%s", late, len(rows), report)
	}
	if !strings.Contains(report, "timed out: ") {
		t.Errorf("no summary counts the reads that timed out:\n%s", report)
	}
}

// tableRows parses the reads table of a report into one map per row, keyed
// by the header's column names. Rows start at the margin; the summaries under
// them are indented. The last column, why, is left out: it holds spaces.
func tableRows(t *testing.T, report string) []map[string]string {
	t.Helper()
	var header []string
	var rows []map[string]string
	for line := range strings.Lines(report) {
		fields := strings.Fields(line)
		switch {
		case len(fields) > 0 && fields[0] == "policy":
			header = fields[:len(fields)-1]
		case header != nil && len(fields) > len(header) && !strings.HasPrefix(line, " "):
			row := make(map[string]string, len(header))
			for i, name := range header {
				row[name] = fields[i]
			}
			rows = append(rows, row)
		}
	}
	if want := len(contenders) * len(fixtures(time.Now())); len(rows) != want {
		t.Fatalf("report has %d table rows, want %d:\n%s", len(rows), want, report)
	}
	return rows
}

func TestWhy(t *testing.T) {
	now := time.Now()
	fresh := cached("v2", now.Add(time.Minute))
	expired := cached("v1", now.Add(-time.Second))
	tests := []struct {
		name      string
		res       tiercache.ReadResult[string]
		f         fixture
		handedOff bool
		want      string
	}{
		{
			name: "L1 hit, L2 skipped",
			res:  result(tiercache.L1, tiercache.StatusHit, tiercache.StatusNotRun),
			f:    fixture{l1: fresh},
			want: "L1 hit, L2 not read",
		},
		{
			name:      "L1 won, loser offloaded",
			res:       result(tiercache.L1, tiercache.StatusHit, tiercache.StatusAbandoned),
			f:         fixture{l1: fresh, l2: fresh},
			handedOff: true,
			want:      "L1 won the race, L2 offloaded",
		},
		{
			name: "L2 won, loser cancelled",
			res:  result(tiercache.L2, tiercache.StatusAbandoned, tiercache.StatusHit),
			f:    fixture{l2: fresh},
			want: "L2 won the race, L1 cancelled",
		},
		{
			name: "both hit",
			res:  result(tiercache.L2, tiercache.StatusHit, tiercache.StatusHit),
			f:    fixture{l1: fresh, l2: fresh},
			want: "both hit, L2 expires later",
		},
		{
			name: "L1 expired",
			res:  result(tiercache.L2, tiercache.StatusMiss, tiercache.StatusHit),
			f:    fixture{l1: expired, l2: fresh},
			want: "L1 expired → L2",
		},
		{
			name: "nowhere",
			res:  result(tiercache.NoLayer, tiercache.StatusMiss, tiercache.StatusMiss),
			want: "in neither layer",
		},
		{
			name: "L1 failed",
			res: tiercache.ReadResult[string]{
				L1: tiercache.LayerReport{Status: tiercache.StatusFailed, Err: errors.New("boom")},
				L2: tiercache.LayerReport{Status: tiercache.StatusMiss},
			},
			want: "no value: L1 failed, L2 miss",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := why(tt.res, tt.f, tt.handedOff); got != tt.want {
				t.Errorf("why() = %q, want %q", got, tt.want)
			}
		})
	}
}

func result(source tiercache.Layer, l1, l2 tiercache.ReadStatus) tiercache.ReadResult[string] {
	res := tiercache.ReadResult[string]{
		Source: source,
		L1:     tiercache.LayerReport{Status: l1},
		L2:     tiercache.LayerReport{Status: l2},
	}
	if source != tiercache.NoLayer {
		res.Value = cached("v", time.Now().Add(time.Minute))
	}
	return res
}
