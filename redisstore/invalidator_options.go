package redisstore

import (
	"fmt"
	"time"
)

// DefaultChannel is the pub/sub channel of an Invalidator whose
// InvalidatorOptions.Channel is empty.
const DefaultChannel = "tiercache:invalidate"

// DefaultBatchWindow is InvalidatorOptions.BatchWindow when zero: 1 ms. It
// bounds an Invalidator to about a thousand messages a second however hard
// its caches write, adds a millisecond or two to a key's journey under
// write load, and nothing to a write that comes alone (see the package
// documentation for the measurements).
const DefaultBatchWindow = time.Millisecond

// MaxBatchWindow is the largest InvalidatorOptions.BatchWindow: under
// write load, every announcement waits up to the window before it leaves
// the process.
const MaxBatchWindow = time.Second

// DefaultMaxPendingKeys is InvalidatorOptions.MaxPendingKeys when zero.
const DefaultMaxPendingKeys = 65536

// InvalidatorOptions configures an Invalidator. The zero value (and a nil
// *InvalidatorOptions) is valid: DefaultChannel, DefaultBatchWindow,
// DefaultMaxPendingKeys.
type InvalidatorOptions struct {
	// Channel is the Redis pub/sub channel the Invalidator publishes on and
	// subscribes to. Caches that share L2 data (the replicas of a service)
	// must share it; caches over unrelated data should not, or they evict
	// each other's keys for nothing. Default (""): DefaultChannel,
	// "tiercache:invalidate".
	Channel string

	// BatchWindow batches announcements: at most one PUBLISH goes out per
	// window, with every key announced since the previous one, each key
	// once. A key announced when no message went out within the last window
	// is published at once; the keys announced after it wait for the window
	// to end and go out together. Zero: DefaultBatchWindow (1 ms).
	// Negative: no batching beyond what waiting costs anyway: a PUBLISH
	// goes out as soon as the previous one has been answered, with the keys
	// announced meanwhile. At most MaxBatchWindow (1 s).
	BatchWindow time.Duration

	// MaxPendingKeys bounds two queues, in keys: the keys waiting to be
	// published (while Redis is slow or unreachable), and the keys waiting
	// to be handed to each subscribed cache (while its handler is slow).
	// Past it, the queue's keys are replaced by one "flush everything": the
	// other Invalidators are sent a flush message, or the subscribed cache
	// is told SubscriptionLost then SubscriptionRestored, which flushes its
	// L1 (see the package documentation). Zero: DefaultMaxPendingKeys
	// (65,536). Must not be negative.
	MaxPendingKeys int
}

// validate reports the first invalid field, in an error prefixed
// "redisstore:".
func (o *InvalidatorOptions) validate() error {
	if o.BatchWindow > MaxBatchWindow {
		return fmt.Errorf("redisstore: InvalidatorOptions.BatchWindow = %v: must be at most %v", o.BatchWindow, MaxBatchWindow)
	}
	if o.MaxPendingKeys < 0 {
		return fmt.Errorf("redisstore: InvalidatorOptions.MaxPendingKeys = %d: must not be negative (0: DefaultMaxPendingKeys)", o.MaxPendingKeys)
	}
	return nil
}
