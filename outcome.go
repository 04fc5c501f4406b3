package tiercache

import (
	"errors"
	"strconv"
)

// Outcome is how the work an Event reports ended, in the terms a metric
// labels it with. Event.Outcome derives it, so that every exporter counts
// the same way.
type Outcome uint8

const (
	// OutcomeHit: a read, or an operation that reads, found a value.
	OutcomeHit Outcome = iota
	// OutcomeMiss: it found none; a remembered or loaded absence
	// (ErrNotFound) is a miss, not a failure.
	OutcomeMiss
	// OutcomeFailed: it failed.
	OutcomeFailed
	// OutcomeOK: a write, a load, or other work that does not read,
	// succeeded.
	OutcomeOK
	// OutcomeNotFound: a load whose loader said ErrNotFound.
	OutcomeNotFound
	// OutcomeUnknown: a layer read that was not run or was abandoned, or a
	// status this version does not know.
	OutcomeUnknown
)

var outcomeNames = [...]string{
	OutcomeHit:      "hit",
	OutcomeMiss:     "miss",
	OutcomeFailed:   "failed",
	OutcomeOK:       "ok",
	OutcomeNotFound: "not_found",
	OutcomeUnknown:  "unknown",
}

// String returns the outcome's name as metrics label it: "hit", "miss",
// "failed", "ok", "not_found" or "unknown".
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// Outcome returns how the work e reports ended:
//
//   - EventRead: from Status: hit, miss or failed; unknown for a read not
//     run or abandoned;
//   - EventOpDone: failed for an error other than ErrNotFound; ok for a
//     Set or Delete; hit when a value was found; miss otherwise;
//   - EventLoad: ok, not_found (Err wraps ErrNotFound) or failed;
//   - any other kind: ok, or failed when Err is set.
func (e Event) Outcome() Outcome {
	switch e.Kind {
	case EventRead:
		switch e.Status {
		case StatusHit:
			return OutcomeHit
		case StatusMiss:
			return OutcomeMiss
		case StatusFailed:
			return OutcomeFailed
		}
		return OutcomeUnknown
	case EventOpDone:
		switch {
		case e.Err != nil && !errors.Is(e.Err, ErrNotFound):
			return OutcomeFailed
		case e.Op == OpSet || e.Op == OpDelete:
			return OutcomeOK
		case e.Err == nil && e.Status == StatusHit:
			return OutcomeHit
		}
		return OutcomeMiss
	case EventLoad:
		switch {
		case e.Err == nil:
			return OutcomeOK
		case errors.Is(e.Err, ErrNotFound):
			return OutcomeNotFound
		}
		return OutcomeFailed
	}
	if e.Err != nil {
		return OutcomeFailed
	}
	return OutcomeOK
}
