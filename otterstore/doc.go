// Package otterstore is an in-process [tiercache.Backend] built on otter
// (github.com/maypok86/otter/v2): the L1 of a [tiercache.Cache].
//
// [New] returns a [Store] bounded by entry count ([Options.MaximumSize],
// [DefaultMaximumSize] by default) or by weight ([Options.MaximumWeight]
// with an [Options.Weigher]); otter's W-TinyLFU policy picks what to evict.
//
// # Values and expiry
//
// A Store keeps each [tiercache.CacheValue] as is, behind a pointer, with no
// serialization. Each entry expires at its own Expire (a zero Expire never
// expires): otter removes it in the background, and [Store.Get] never
// returns a value whose Expire has passed, even before otter has removed it.
// A value that has already expired when it is Set is not stored.
//
// [Store.Get] returns the pointer the Store holds and allocates nothing. The
// value behind it is shared by every reader and must not be modified; a
// tiercache.Cache never modifies it. [Store.Set] stores a copy of its
// argument.
//
// # Batches
//
// [Store.GetMany] and [Store.SetMany] make a Store a
// [tiercache.BatchBackend]: they read and write many keys as Get and Set
// do, key by key on the caller's goroutine, with ctx checked once at the
// start. GetMany allocates only the slice it returns. Neither fails for
// part of a batch: they fail as a whole, before doing anything, or not at
// all.
//
// # Lifetime
//
// A Store owns goroutines: one that removes expired entries every second
// and short-lived ones that run otter's maintenance. [Store.Close] stops
// them and waits for them; close the Store after the tiercache.Cache that
// uses it.
//
// Every operation that takes a ctx returns an error wrapping ctx's error,
// without doing the work, when ctx has already ended; otherwise it does not
// block, so ctx is not consulted again.
//
// Since a Set never blocks, a Cache over a Store can copy its L2 hits into
// it on the reader's goroutine: set [tiercache.Options.Refill] to
// [tiercache.RefillInline] to save a hand-off to the Cache's Offload on
// every L2 hit.
package otterstore
