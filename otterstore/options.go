package otterstore

import (
	"errors"
	"fmt"

	"github.com/tiercache/tiercache"
)

// DefaultMaximumSize is the bound, in entries, of a Store whose Options set
// neither MaximumSize nor MaximumWeight.
const DefaultMaximumSize = 10_000

// Options configures a Store. The zero value (and a nil *Options) is a store
// bounded to DefaultMaximumSize entries. New validates the options and never
// modifies them.
//
// A Store is bounded either by entry count (MaximumSize) or by weight
// (MaximumWeight with a Weigher), never by both. Otter may evict an entry
// before the bound is reached, and may exceed it briefly while it evicts;
// which entries go is decided by otter's W-TinyLFU policy.
type Options[T any] struct {
	// MaximumSize bounds the store in entries. It must not be negative, and
	// cannot be combined with MaximumWeight or Weigher. Zero, with no
	// MaximumWeight: DefaultMaximumSize.
	MaximumSize int
	// MaximumWeight bounds the store in total weight, as computed by
	// Weigher; it requires Weigher. Zero: the store is bounded by
	// MaximumSize instead.
	MaximumWeight uint64
	// Weigher returns the weight of an entry, for MaximumWeight; it requires
	// MaximumWeight. It is called once per write, with the value as written,
	// and the weight stays fixed while the entry lives. An entry of weight 0
	// is never evicted for size (it still expires). Weigher must be safe for
	// concurrent use and must not call the Store: otter runs it under the
	// lock of the entry's bucket. Nil: entries are counted, not weighed.
	Weigher func(key string, v tiercache.CacheValue[T]) uint32
}

// validate reports the first inconsistency in o, as an error prefixed
// "otterstore:" that names the field.
func (o *Options[T]) validate() error {
	switch {
	case o.MaximumSize < 0:
		return fmt.Errorf("otterstore: MaximumSize %d is negative", o.MaximumSize)
	case o.MaximumSize > 0 && o.MaximumWeight > 0:
		return errors.New("otterstore: MaximumSize and MaximumWeight are both set; bound the store by one of them")
	case o.MaximumSize > 0 && o.Weigher != nil:
		return errors.New("otterstore: MaximumSize and Weigher are both set; a Weigher goes with MaximumWeight")
	case o.MaximumWeight > 0 && o.Weigher == nil:
		return errors.New("otterstore: MaximumWeight requires a Weigher")
	case o.Weigher != nil && o.MaximumWeight == 0:
		return errors.New("otterstore: Weigher requires MaximumWeight")
	}
	return nil
}
