// Package tiercache is a two-tier cache: a fast in-process layer (L1) in
// front of a shared remote layer (L2, usually Redis), composed by policies
// the caller picks.
//
// # The cache
//
// [New] composes two [Backend]s into a [Cache]. [Cache.Get] reads through
// the [ReadPolicy] and copies L2 hits into L1 in the background;
// [Cache.Set] and [Cache.Delete] write through the [WritePolicy];
// [Cache.GetOrLoad] puts the origin behind both layers with one load per key
// however many callers miss at once, negative caching of [ErrNotFound] and
// stale-while-revalidate. When L2 is slow or down, reads and loads degrade
// to L1 and the origin and the failures are counted in [Stats] instead of
// failing the caller. [Options] documents every setting and its default.
//
// # Values
//
// Every layer stores a [CacheValue]: the data plus two instants. Past Stale
// the value is still served but due for a refresh; past Expire it is gone and
// every policy treats it as a miss. A value with Negative set is a remembered
// absence: a cached fact that the thing does not exist.
//
// # Read policies
//
// A [ReadPolicy] decides how the two layers are consulted for one key. It is
// given one [ReadFunc] per layer and returns the chosen value together with a
// [LayerReport] for each layer in a [ReadResult]:
//
//   - [SequentialReadPolicy] reads L1 and only on a miss or failure reads L2.
//     Cheapest: no goroutine, no allocation on an L1 hit.
//   - [RaceReadPolicy] starts both layers (or L2 after a hedge delay) and
//     takes the first hit. Lowest latency when L1 is cold or slow; the losing
//     read is either handed to the [Offload] to finish or cancelled.
//   - [ParallelReadPolicy] reads both layers and waits for both, preferring
//     the value that lives longer. Freshest answer, at the price of always
//     waiting for L2.
//
// All three are zero-value usable and safe for concurrent use. A reader that
// panics is reported as that layer's failure with a [*PanicError]; it never
// crashes the process.
//
// # Background work
//
// Work that must not delay the caller (finishing an abandoned read, refilling
// L1 unless [RefillInline] says otherwise, refreshing a stale value) goes
// through an [Offload]. [OffloadPool] is
// the bounded implementation: it runs at most a fixed number of tasks at
// once, queues a bounded number more and sheds the rest, so a slow L2 can
// never grow the goroutine count without bound.
package tiercache
