package tiercacheprom_test

import (
	"time"

	"github.com/tiercache/tiercache"
)

// fullStats returns Stats with every field set to a value of its own, so
// that a mix-up of two fields shows.
func fullStats() tiercache.Stats {
	return tiercache.Stats{
		L1:                    tiercache.LayerStats{Hits: 101, Misses: 102, Failures: 103, Abandoned: 104, Latency: tiercache.LatencyStats{Count: 306, Mean: time.Microsecond}},
		L2:                    tiercache.LayerStats{Hits: 201, Misses: 202, Failures: 203, Abandoned: 204, Latency: tiercache.LatencyStats{Count: 606, Mean: time.Millisecond}},
		Loads:                 1,
		LoadErrors:            2,
		NotFound:              3,
		Coalesced:             4,
		Refills:               5,
		RefillsSkipped:        6,
		StaleServed:           7,
		Refreshes:             8,
		NegativeHits:          9,
		WriteErrors:           10,
		OffloadRejected:       11,
		ObserverPanics:        25,
		InvalidationsSent:     12,
		InvalidationErrors:    13,
		InvalidationsReceived: 14,
		InvalidationEvictions: 15,
		SubscriptionDrops:     16,
		Unsubscribed:          1500 * time.Millisecond,
		BatchCalls:            17,
		BatchKeys:             18,
		BatchKeysLoaded:       19,
		BatchKeysCoalesced:    20,
		Breaker:               tiercache.BreakerStats{State: tiercache.BreakerHalfOpen, Opens: 21, Closes: 22, Rejected: 23, WritesSkipped: 24},
	}
}
