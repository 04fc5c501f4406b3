// Package redisstore is a [tiercache.Backend] kept in Redis, through
// go-redis v9: the shared L2 of a [tiercache.Cache].
//
// # Usage
//
// [New] takes any [redis.UniversalClient]: a single node, Sentinel or
// Cluster. Build the client with ContextTimeoutEnabled, so that a command
// abandoned at its ctx's deadline ends then rather than at the client's
// ReadTimeout, and batches of coalesced operations on a single node cost no
// goroutine of their own (see Deadlines below):
//
//	client := redis.NewClient(&redis.Options{
//		Addr:                  "localhost:6379",
//		ContextTimeoutEnabled: true, // socket I/O bounded by each ctx's deadline
//	})
//	defer client.Close()
//	// Cluster: redis.NewClusterClient(&redis.ClusterOptions{Addrs: ...});
//	// Sentinel: redis.NewFailoverClient(&redis.FailoverOptions{...});
//	// either: redis.NewUniversalClient(&redis.UniversalOptions{...}).
//
//	l2, err := redisstore.New(client, &redisstore.Options[User]{
//		KeyPrefix: "users:", // the Redis key of "42" is "users:42"
//	})
//	if err != nil {
//		return err
//	}
//	defer l2.Close(ctx) // waits for abandoned commands; the client stays open
//	cache, err := tiercache.New(l1, l2, &tiercache.Options[User]{
//		DefaultTTL: 10 * time.Minute,
//		L2Timeout:  100 * time.Millisecond, // each L2 operation's deadline
//	})
//
// The Store does not own the client: the caller closes it, after
// [Store.Close] when the Store was used with ctx deadlines.
//
// # Commands
//
// Each operation sends one command. [Store.Get] is a GET (or a share of an
// MGET, see Coalesced Gets below). [Store.Set] (which may share a pipeline,
// see Coalesced writes below) is
// SET key entry PXAT Expire (in unix milliseconds), so that Redis itself
// drops the value at its Expire; a value without Expire is written without
// TTL (a SET without PXAT also clears the TTL of a previous value). A value
// whose Expire has already passed is not written: Set sends a DEL instead.
// [Store.Delete] is a DEL; a missing key is not an error.
//
// Get also compares Expire with this process's clock after decoding, so it
// never returns an expired value even when the Redis server's clock is
// behind. Keys are [Options.KeyPrefix] followed by the caller's key. With
// Redis Cluster each key lives in its own slot, unless the prefix holds a
// hash tag such as "{users}:", which puts every key on one node.
//
// # Batches
//
// [Store.GetMany] and [Store.SetMany] (the [tiercache.BatchBackend]
// capability, which a Cache uses for GetMany and GetOrLoadMany) cost one
// round trip per Redis node the keys live on, whatever their number:
//
//   - a *redis.Client (a single node, or Sentinel): GetMany is one MGET;
//     SetMany is one pipeline of the commands Set would send, one per key
//     (SET key entry PXAT Expire, or DEL);
//   - a *redis.ClusterClient: a Cluster refuses an MGET across hash slots,
//     so GetMany groups the keys by slot (computed as Redis does, hash tags
//     included) and sends one MGET per slot in one pipeline; go-redis
//     splits a pipeline by node and sends each node its part at once, so
//     the batch costs one round trip per node, concurrently. SetMany's
//     pipeline is split the same way;
//   - any other client (a *redis.Ring, whose shards are chosen by a hash of
//     its own, or a wrapper): GetMany is one GET per key in one pipeline,
//     which a Ring splits by shard.
//
// Entries are decoded and checked one by one, as Get does: an entry that
// cannot be decoded or is above MaxValueBytes fails its key only. A batch
// that fails for some keys only returns a [*BatchError] naming them (the
// caller's keys in BatchError.Keys, and each key's error, which names the
// Redis key); a batch that fails as a whole (ctx ended, Store closed)
// returns another error, and GetMany a nil slice. Both methods keep the
// deadline guarantee below: a pipeline runs directly or guarded exactly as
// one command does.
//
// A key that holds something other than a string reads as a miss in a
// GetMany on a single node or a Cluster, since MGET answers nil for it, and
// in a Get on a Store that coalesces Gets (see below); a Get with
// coalescing off fails with Redis's WRONGTYPE error.
//
// # Coalesced Gets
//
// Over a *redis.Client, concurrent Gets share round trips
// ([Options.CoalesceGets], n = [SuggestedCoalesceGets] by default; -1
// turns it off; other clients coalesce only when it is set). A Get that
// finds no other Get in flight sends its own GET, as it would without
// coalescing, so a Store whose Gets do not overlap pays nothing for it. One that finds others in flight queues its
// key, and at most n dispatcher goroutines each take every
// Get queued (up to 128) and read their keys, each distinct key once, with
// one MGET (one per hash slot in one pipeline on a Cluster), as GetMany
// does. There is no timer: a batch is whatever queued while the
// dispatchers were busy, so coalescing adds no wait beyond a goroutine
// hand-off and gathers Gets into batches when Redis does not keep up.
// Under many callers this cuts the GETs sent (and the syscalls and
// connections they cost) by the batch size: in the comparison benchmark's
// L2-heavy workload, from one command a call to about a third of one.
//
// Each Get still waits for its own ctx only: a Get whose ctx ends while it
// is queued is dropped from its batch, and one whose batch is in flight
// returns at once. A batch reads with the values of its first caller's ctx
// and the latest of its callers' deadlines (none when one of them has
// none). Each Get decodes its own entry, so a bad entry fails its own Gets
// only; a key holding something other than a string reads as a miss, as in
// GetMany, whether its Get was queued or not. A dispatcher starts when a
// Get is queued and fewer than n are running, and exits when it finds the
// queue empty: an idle Store holds no goroutine, and [Store.Close] waits
// for the dispatchers still sending.
//
// # Coalesced writes
//
// Concurrent Sets and Deletes share round trips the same way
// ([Options.CoalesceWrites], with the same default): a write that finds no
// other in flight sends its own command; past that, at most n
// dispatcher goroutines each take every write queued (up to 128) and send
// their commands (the SET or DEL each would send alone) in one pipeline,
// in the order they were queued; on a Cluster go-redis splits the pipeline
// by node. Each write gets its own command's answer, so a write the server
// refuses fails alone; a write whose ctx ends while it is queued is not
// sent, and one whose pipeline is in flight returns at once (its command
// may still land, as a command abandoned at its deadline may). Writes of
// one caller, each waiting for the last, reach Redis in order; writes of
// concurrent callers reach it in no given order, as without coalescing. A
// batch's deadline and values are those of coalesced Gets. Under many
// callers this cuts the round trips (and connections) of writes by the
// batch size: a Cache's L2 writes of loaded values, for one, come from
// many loads at once.
//
// # Entry format
//
// The value of a key is an entry: a header of 4 to 20 bytes, then the
// [Options.Codec]'s payload (JSON by default, see [JSONCodec]).
//
//	offset   size  field
//	0        2     magic 0xC1 0x54. 0xC1 never occurs in UTF-8 and is unused
//	               in MessagePack, so values written by anything else (text,
//	               JSON, msgpack) are recognised as foreign.
//	2        1     format version, 1
//	3        1     flags: 0x01 negative, 0x02 has Expire, 0x04 has Stale; the
//	               other bits are reserved and must be zero
//	4        8     Expire in unix milliseconds, big-endian int64; only with 0x02
//	4 or 12  8     Stale in unix milliseconds, big-endian int64; only with 0x04
//	4 to 20  rest  the Codec's payload; empty for a negative entry
//
// Data, Expire, Stale and Negative round-trip exactly, the instants to the
// millisecond (rounded down); a zero instant is absent from the header and
// comes back zero. A negative entry has no payload and comes back with the
// zero Data. A reader refuses a version it does not know, so a format
// change that older readers would misread comes with a new version number.
//
// # Bad entries and limits
//
// An entry larger than [Options.MaxValueBytes] ([DefaultMaxValueBytes], 4
// MiB, by default: room for a 1 MiB value and its header many times over)
// is refused: Set fails with [ErrValueTooLarge] and deletes the key, so
// that readers do not keep the value it was meant to replace; a Get that
// reads one (written by someone else) fails with it too. go-redis has read
// the whole value by then: the limit protects the decoder and the callers,
// not the socket.
//
// A Get that reads bytes that are not an entry (foreign, truncated, corrupt,
// of a newer format version, or a payload the Codec cannot decode) fails
// with an error wrapping [ErrInvalidEntry]. Every error starts with
// "redisstore:" and names the Redis key; a Cache counts a failed L2 read as
// a failure of that layer and carries on as on a miss. A Codec that panics
// fails the operation with a [*tiercache.PanicError] instead of crashing
// the process.
//
// # Deadlines
//
// Every operation returns by its ctx's deadline (or cancellation), with an
// error for which errors.Is(err, context.DeadlineExceeded) (or
// context.Canceled) holds, whatever the client's options.
//
// go-redis applies a ctx's deadline to socket reads and writes only when
// the client was built with ContextTimeoutEnabled, and never its
// cancellation: against a server that stopped answering, a command returns
// after the client's ReadTimeout (5 s) with its default options, and at
// the ctx's deadline with ContextTimeoutEnabled, however early the ctx was
// cancelled. So a command takes one of two paths:
//
//   - Direct path: the command runs on the calling goroutine, as a plain
//     go-redis call does. A command whose ctx can never end
//     (context.Background) takes it on any client. So does a batch of
//     coalesced Gets or writes (see above), whose ctx the Store makes and
//     ends only at its deadline, on a client that bounds socket I/O by that
//     deadline: a *redis.Client (single node, or Sentinel) or a *redis.Ring
//     with ContextTimeoutEnabled (and socket deadlines not disabled with a
//     ReadTimeout or WriteTimeout of -2; for a Ring, in its own options
//     and in each shard's, which a RingOptions.NewClient may set apart).
//   - Guarded path: every other command, on any client, including every
//     one whose ctx has a deadline (the ctx may still be cancelled before
//     it) and every command of a *redis.ClusterClient (with
//     ContextTimeoutEnabled too: its first commands fetch COMMAND info from
//     a node under a timeout of go-redis's own, which ignores ctx; a Get
//     with a 100 ms deadline was measured to take 5 s against a frozen
//     cluster). The command runs on a goroutine of its own and the caller
//     returns when the command ends or ctx ends, whichever is first. An
//     abandoned command goes on until go-redis ends it: at the latest at the
//     client's ReadTimeout (at the ctx's deadline, if earlier, with
//     ContextTimeoutEnabled), at once if it was still waiting for a pooled
//     connection. So the abandoned goroutines are at most the client's pool
//     size (per node, with a cluster); [Store.Close] waits for them.
//
// What the guarded path costs, measured on a 2-core virtual machine (Go
// 1.26, a ~200-byte JSON value, ctx with a deadline, medians of 10 runs;
// "direct" in the last two is a client with ContextTimeoutEnabled, measured
// when such a client still ran a ctx with a deadline directly):
//
//   - BenchmarkGetOverhead, a client answering from memory, so that only
//     redisstore's own work counts: a Get, decoding included, takes 6.6 µs
//     on the direct path and 10.1 µs on the guarded one, which adds one
//     goroutine, 3 allocations and 208 bytes per call.
//   - BenchmarkGetParallel, 8 callers against a redis-server on the same
//     machine: 22.2 µs per Get direct, 23.3 µs guarded, a difference within
//     the noise.
//   - BenchmarkGet, one caller: a round trip there is dominated by the
//     virtual CPUs waking up (from 15 to over 100 µs a call, depending on
//     what else the machine does), and the two paths showed no steady
//     difference.
//
// A call whose ctx can end pays them whatever the client: go-redis offers
// no way to interrupt a read in progress when ctx is cancelled.
// ContextTimeoutEnabled still saves them on coalesced batches, and ends
// abandoned commands, and frees their connections, at their ctx's
// deadline.
//
// # Invalidation across replicas
//
// Each replica of a service has its own L1, so a write in one leaves the old
// value in the others' L1s until it expires. [Invalidator] closes that gap
// over Redis pub/sub: it implements [tiercache.Invalidator]. Give each
// replica one (on the client the replica already has), and hand it to the
// replica's caches whose L2 data the other replicas share:
//
//	inv, err := redisstore.NewInvalidator(client, nil) // "tiercache:invalidate", 1 ms batches
//	if err != nil {
//		return err
//	}
//	defer inv.Close() // after the caches' Close
//	cache, err := tiercache.New(l1, l2, &tiercache.Options[User]{
//		Invalidator: inv, // l1 must be a tiercache.Flusher; otterstore is
//	})
//
// Every Set, Delete, load and refresh of a cache is announced after its L2
// write (a Set's even when that failed: it may have landed); every other
// cache evicts the key from its L1 and reads the new value from L2 next
// time. The other caches of the process get the keys
// directly, at once; the other processes through a PUBLISH on
// [InvalidatorOptions.Channel]. A cache never gets its own keys back: each
// message carries the random id of the Invalidator that sent it, and an
// Invalidator drops its own messages when Redis echoes them. Classic
// pub/sub reaches every node of a Cluster whichever node a message is
// published on, so an Invalidator over a *redis.ClusterClient works as one
// over a *redis.Client does (both are tested). A *redis.Ring has no such
// bus: it sends a PUBLISH to the shard its channel's name hashes to, and
// the Invalidator subscribes on that shard, so Invalidators over Rings of
// the same shards reach each other (tested too). But a Ring hashes over
// the shards it sees up: a replica whose Ring alone sees the channel's
// shard down publishes to another shard, and the others, still subscribed
// where they were, miss its messages without noticing. Give the
// Invalidator a *redis.Client of one node (or a *redis.ClusterClient)
// even when the Stores use a Ring: it needs one bus, not sharding.
//
// Messages are binary, small and versioned, at most 64 KiB (a larger batch
// is split; a single key larger than that goes alone):
//
//	offset  size  field
//	0       2     magic 0xC1 0x49 (0xC1 never occurs in UTF-8)
//	2       1     format version, 1
//	3       1     kind: 1 keys, 2 flush (any key may have changed)
//	4       8     the sending Invalidator's id, big-endian
//	12      rest  kind 1: groups, each the id of the subscription (the cache)
//	              that announced the keys (uvarint), their number n >= 1
//	              (uvarint), then n times a key's length (uvarint) and bytes
//
// Anything else on the channel (foreign text, a truncated or corrupt
// message, trailing bytes, an unknown kind) is counted in
// [InvalidatorStats.MessagesMalformed] and ignored, never a panic; the
// decoder is fuzzed (FuzzMessageDecode). A message of a later version may
// carry invalidations this one cannot read, so it makes every cache flush
// its L1 (MessagesUnsupported): a format change that older readers would
// misread comes with a new version, and is rolled out after the readers
// that understand it.
//
// # Batching
//
// At most one PUBLISH goes out per [InvalidatorOptions.BatchWindow] (1 ms
// by default; a few, for a batch above 64 KiB), with every key announced
// since the previous one, each key once. A key announced when no message went out within the last window is
// published at once, so writes that come apart wait for nothing; under
// write load, each key waits at most a window. The window bounds an
// Invalidator to about a thousand messages a second however hard its
// caches write, which matters as replicas are added: every message is
// written to every subscriber, so Redis's work grows with the replicas
// times their messages.
//
// Measured on loopback, on the 2-core virtual machine of the other figures
// while other jobs kept it busy (load average 5 to 7), redis-server 7.0,
// three runs each: eight writers Set distinct keys on replica A, paced to
// 5,000 writes a second in all, or flat out (24,000 to 44,000 a second),
// and replica B records when each key leaves its L1; the delay runs from
// A's Set returning to B's eviction (BenchmarkInvalidationBatching).
//
//	                 5,000 writes/s                      flat out
//	BatchWindow    msgs/s       keys/msg  p50      p99     msgs/s       keys/msg  p50      p99
//	none (< 0)     2,400-2,900  1.7-2.1   0.18 ms  1.5-12  2,300-3,500  9-11      0.3-0.4  3.4-39
//	250 µs         1,000-1,300  3.9-5.0   0.40 ms  2.9-7   2,100-2,300  12-16     0.4-0.5  3.8-5.6
//	1 ms, default    510-630    7.9-9.5   1.5 ms   5-5.5   770-820      34-41     0.8-0.9  4.2-5.8
//	5 ms             150-170    29-32     4.0 ms   8.5-28  190-195      150-220   3.0-3.2  6.3-8.2
//
// (p99 in milliseconds; one 1 ms run at 5,000 writes/s had a p99 of 47 ms,
// the machine stalling.) Without a window, a replica sends three to four
// times the messages for a millisecond or less at the median, and no
// better tail: Redis and the receivers have more to do. A window below 1 ms
// mostly costs 1 ms when it does wait (500 µs measured as 1 ms does): when
// a Go process has nothing else to do, its timers wake it in whole
// milliseconds. Writes one at a time (TestPropagationDelay and
// BenchmarkPropagationDelay, 1,000 writes, default window, eight runs)
// reach the other L1 in 0.15 to 0.25 ms at the median when they come 2 ms
// apart, each going out at once; back to back, each waits for the window
// the one before opened: 1.25 to 1.4 ms at the median. The p99 was 1 to 4
// ms in most runs, either way, and up to 10 ms (21 once) in runs where the
// machine was busiest: the time it took to wake goroutines that slept, the
// publisher waiting out its window among them (without a window, writes
// back to back had a p99 of 0.3 ms).
//
// # Lost messages
//
// Pub/sub delivers a message to the subscribers connected when it is
// published, and to no one else: a replica whose subscription is down
// misses invalidations, and cannot know which. So from the moment a drop is
// seen until a new subscription is confirmed, its caches do not trust their
// L1s: the Invalidator tells them SubscriptionLost, and each cache flushes
// its L1 and reads around it, from L2; then SubscriptionRestored, and each
// flushes again (whatever it held may have changed meanwhile) and uses its
// L1 again. Until its first subscription is confirmed, an Invalidator
// reports SubscriptionLost too.
//
// The drops must all be seen, and go-redis's PubSub.Channel hides them: it
// reconnects and resubscribes by itself. The Invalidator reads with
// ReceiveTimeout in a loop of its own. After 500 ms without anything to
// read it sends a PING with a payload of its own; no answer within 1 s is a
// drop, which catches a frozen Redis or a connection gone half-open within
// 1.5 s (measured: 1.5 s). Any read error is a drop, reported at once,
// even one after which go-redis has reconnected behind the Invalidator's
// back; so is anything it did not ask for, a subscription renewed or a
// PONG with another payload. It then makes a new subscription, retrying
// after 25 to 50 ms, then twice as long each time up to 2.5 to 5 s (a
// random half of a doubling wait, so that replicas do not come back in
// step), and reports SubscriptionRestored only once Redis has confirmed
// the SUBSCRIBE. A subscription that lasted 5 s or more starts the backoff
// afresh.
//
// # When announcements cannot be sent
//
// Announce never waits for the network: the keys are queued, each once,
// for a goroutine that publishes them. A PUBLISH that fails (each has a 1 s
// deadline) is counted (PublishErrors) and tried again after the same
// backoff, or at once when the subscription comes back; its keys stay
// queued. A failed PUBLISH does not mark this process's subscription lost:
// its caches' L1s depend on the messages they receive, not on those they
// send, and the subscription's own health check finds within 1.5 s whether
// Redis is out of reach. The keys waiting are what matter, for the other
// replicas, whose L1s keep the old values until the keys arrive.
//
// The queue is bounded by [InvalidatorOptions.MaxPendingKeys] (65,536 by
// default). Past it, its keys are replaced by one flush message, which
// makes every cache of the other processes flush its L1 (they see
// SubscriptionLost then SubscriptionRestored, which their Stats count as a
// subscription drop): memory stays bounded and no invalidation is lost, at
// the price of a flush. A cache whose handler
// falls behind is treated alike: past MaxPendingKeys keys waiting for it,
// it is told to flush instead. Close publishes what is still queued within
// 1 s, and counts what it could not (KeysDropped).
//
// # What is guaranteed, and what is not
//
// Guaranteed:
//
//   - Eventual coherence: a key written by one replica is evicted from the
//     other replicas' L1s within the delays measured above (a p99 of 1 to 6
//     ms on loopback, plus the network's round trip elsewhere) while Redis
//     and the replicas are healthy.
//   - No stale L1 after a lost message: from the moment a drop is seen, a
//     cache reads around its L1 until it has resubscribed and flushed it,
//     so the values it returns come from L2. The tests kill redis-server
//     (SIGKILL), restart it on the same port and cut a single subscription
//     (CLIENT KILL) while another replica writes: the replica that held the
//     old value never returns it after the drop.
//   - No self-echo: a cache keeps in L1 what it has just written.
//
// Not guaranteed:
//
//   - Reads on other replicas within the propagation delay see the old
//     value: a write is not visible everywhere when Set returns.
//   - Drops are seen at once when the connection fails (a restart, a
//     failover, a killed connection, Redis closing a subscriber that reads
//     too slowly), but a connection that goes half-open is only found by
//     the PING, within 1.5 s; messages lost meanwhile can leave old values
//     in L1 until the drop is seen.
//   - A replica that cannot publish (Redis out of its reach only, or a
//     PUBLISH failing) leaves the others' L1s stale until a PUBLISH goes
//     through. If it crashes or is closed first, the keys are lost (a crash
//     between the L2 write and the PUBLISH too): the other L1s keep the old
//     values until they expire. Options.L1MaxTTL bounds that.
//   - In a Cluster, a node cut off from the cluster bus while its
//     subscribers still reach it stops relaying messages published on other
//     nodes, and nothing tells its subscribers.
//   - Caches on one channel evict each other's keys by name: caches over
//     unrelated data should use channels of their own.
package redisstore
