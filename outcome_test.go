package tiercache_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/tiercache/tiercache"
)

func TestEventOutcome(t *testing.T) {
	boom := errors.New("boom")
	notFound := fmt.Errorf("tiercache: %q: %w", "k", tiercache.ErrNotFound)
	for _, tt := range []struct {
		name string
		e    tiercache.Event
		want tiercache.Outcome
	}{
		{"read hit", tiercache.Event{Kind: tiercache.EventRead, Status: tiercache.StatusHit}, tiercache.OutcomeHit},
		{"read miss", tiercache.Event{Kind: tiercache.EventRead, Status: tiercache.StatusMiss}, tiercache.OutcomeMiss},
		{"read failed", tiercache.Event{Kind: tiercache.EventRead, Status: tiercache.StatusFailed, Err: boom}, tiercache.OutcomeFailed},
		{"read abandoned", tiercache.Event{Kind: tiercache.EventRead, Status: tiercache.StatusAbandoned}, tiercache.OutcomeUnknown},
		{"read not run", tiercache.Event{Kind: tiercache.EventRead, Status: tiercache.StatusNotRun}, tiercache.OutcomeUnknown},
		{"get hit", tiercache.Event{Kind: tiercache.EventOpDone, Op: tiercache.OpGet, Status: tiercache.StatusHit}, tiercache.OutcomeHit},
		{"get miss", tiercache.Event{Kind: tiercache.EventOpDone, Op: tiercache.OpGet, Status: tiercache.StatusMiss}, tiercache.OutcomeMiss},
		{"get or load not found", tiercache.Event{Kind: tiercache.EventOpDone, Op: tiercache.OpGetOrLoad, Status: tiercache.StatusHit, Err: notFound}, tiercache.OutcomeMiss},
		{"get failed", tiercache.Event{Kind: tiercache.EventOpDone, Op: tiercache.OpGet, Err: boom}, tiercache.OutcomeFailed},
		{"set", tiercache.Event{Kind: tiercache.EventOpDone, Op: tiercache.OpSet, Status: tiercache.StatusNotRun}, tiercache.OutcomeOK},
		{"delete failed", tiercache.Event{Kind: tiercache.EventOpDone, Op: tiercache.OpDelete, Err: boom}, tiercache.OutcomeFailed},
		{"load ok", tiercache.Event{Kind: tiercache.EventLoad}, tiercache.OutcomeOK},
		{"load not found", tiercache.Event{Kind: tiercache.EventLoad, Err: notFound}, tiercache.OutcomeNotFound},
		{"load failed", tiercache.Event{Kind: tiercache.EventLoad, Err: boom}, tiercache.OutcomeFailed},
		{"invalidation sent", tiercache.Event{Kind: tiercache.EventInvalidationSent, Keys: 3}, tiercache.OutcomeOK},
		{"invalidation refused", tiercache.Event{Kind: tiercache.EventInvalidationSent, Err: boom}, tiercache.OutcomeFailed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.e.Outcome())
		})
	}
}

func TestOutcomeString(t *testing.T) {
	for o, want := range map[tiercache.Outcome]string{
		tiercache.OutcomeHit: "hit", tiercache.OutcomeMiss: "miss", tiercache.OutcomeFailed: "failed",
		tiercache.OutcomeOK: "ok", tiercache.OutcomeNotFound: "not_found", tiercache.OutcomeUnknown: "unknown",
		tiercache.Outcome(42): "Outcome(42)",
	} {
		assert.Equal(t, want, o.String())
	}
}
