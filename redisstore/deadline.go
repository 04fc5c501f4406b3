package redisstore

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
	"github.com/tiercache/tiercache"
)

// boundsIOByContext reports whether client bounds every command by the
// deadline of the command's ctx, so that a Store may call it on the calling
// goroutine with a ctx that ends at its deadline and not before (see
// runsDirect).
//
// go-redis sets socket deadlines from ctx only with ContextTimeoutEnabled,
// and not even then with a ReadTimeout or WriteTimeout of -2 (no socket
// deadline at all; -1 once go-redis has normalised its options). That is
// enough for a *redis.Client (single node, or Sentinel through
// NewFailoverClient). A *redis.Ring is trusted when its own options say so
// and so do those of each of its shards, which are such clients: that
// catches a RingOptions.NewClient that builds them its own way. Shards
// added later (SetAddrs) come from the same NewClient.
//
// A *redis.ClusterClient is never trusted: on its first commands it fetches
// COMMAND info from a node under a timeout of its own, not ctx's. Measured
// with ContextTimeoutEnabled and a 100 ms deadline: a Get took the client's
// ReadTimeout (2 s) with one node of three frozen, and 5 s with every node
// frozen and the slots given by ClusterOptions.ClusterSlots. A client of
// any other type (a wrapper, a test double) is not trusted either.
func boundsIOByContext(client redis.UniversalClient) bool {
	switch c := client.(type) {
	case *redis.Client:
		o := c.Options()
		return o.ContextTimeoutEnabled && o.ReadTimeout >= 0 && o.WriteTimeout >= 0
	case *redis.Ring:
		// Ring keeps its options as given (-2: no deadline).
		o := c.Options()
		if !o.ContextTimeoutEnabled || o.ReadTimeout < -1 || o.WriteTimeout < -1 {
			return false
		}
		var untrusted atomic.Bool
		_ = c.ForEachShard(context.Background(), func(_ context.Context, shard *redis.Client) error {
			if !boundsIOByContext(shard) {
				untrusted.Store(true)
			}
			return nil
		})
		return !untrusted.Load()
	}
	return false
}

// process runs cmd so that it returns by ctx's end: on the calling
// goroutine when runsDirect says so, otherwise through guarded.
//
// A command that fails once ctx has ended returns an error for which
// errors.Is(err, ctx.Err()) holds, and errors.Is finds the client's error
// too. redis.Nil (a miss) is returned as is.
func (s *Store[T]) process(ctx context.Context, cmd redis.Cmder) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return contextError(ctx, nil)
	}
	var err error
	if s.runsDirect(ctx) {
		err = s.client.Process(ctx, cmd)
	} else {
		err = s.guarded(ctx, cmd)
	}
	if err != nil && err != redis.Nil && ctx.Err() != nil {
		return contextError(ctx, err)
	}
	return err
}

// runsDirect reports whether a command with ctx returns by ctx's end when
// run on the calling goroutine: when ctx can never end, or when it ends at
// its deadline and not before (a deadlineOnly) and the client bounds its
// I/O by that deadline (s.direct).
//
// Any other ctx may be cancelled before its deadline, whatever the client:
// go-redis, even with ContextTimeoutEnabled, sets socket deadlines from
// ctx.Deadline only and never watches ctx.Done, so a command waiting for a
// server that stopped answering would hold its caller until the deadline
// or the client's ReadTimeout.
func (s *Store[T]) runsDirect(ctx context.Context) bool {
	if ctx.Done() == nil {
		return true
	}
	_, ok := ctx.(deadlineOnly)
	return ok && s.direct
}

// deadlineOnly is a ctx that ends at its deadline and not before: nobody
// cancels it while a command runs with it. The Store makes one for each
// batch of a coalescer (see coalescedBatch.context), so that the
// dispatcher, which waits for the batch in any case, calls a client that
// bounds its I/O by ctx (s.direct) on its own goroutine.
type deadlineOnly struct{ context.Context }

// contextError is the error of a command whose ctx ended: it wraps ctx's
// error, its cause when that says more, and the command's own error (an i/o
// timeout, say) when there is one.
func contextError(ctx context.Context, cmdErr error) error {
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != nil && cause != err {
		err = fmt.Errorf("%w: %w", err, cause)
	}
	if cmdErr != nil && cmdErr != ctx.Err() {
		err = fmt.Errorf("%w (%w)", err, cmdErr)
	}
	return err
}

// call is one command that guarded runs on its own goroutine.
type call struct {
	cmd  redis.Cmder
	err  error         // written before done is closed
	done chan struct{} // closed when the command has ended
}

// guarded runs cmd on a new goroutine and returns when the command ends or
// when ctx ends, whichever comes first. go-redis does not bound socket I/O
// by ctx's cancellation, nor with its default options by ctx's deadline,
// so against a server that stopped answering a command would otherwise
// hold the caller until ctx's deadline or the client's ReadTimeout (5 s by
// default).
//
// A command abandoned when ctx ends goes on until the client ends it: at
// the latest at its ReadTimeout (or ctx's deadline, if earlier, with
// ContextTimeoutEnabled), or at once while it is still waiting for a
// connection from the pool (go-redis honours ctx there). The abandoned
// goroutines are therefore at most the client's pool size. Close waits for
// them.
func (s *Store[T]) guarded(ctx context.Context, cmd redis.Cmder) error {
	if !s.pending.add() {
		return ErrClosed
	}
	c := &call{cmd: cmd, done: make(chan struct{})}
	go s.run(ctx, c)
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		select {
		case <-c.done: // ended at the same time: its answer is as good
			return c.err
		default:
			return contextError(ctx, nil)
		}
	}
}

// run is the goroutine of one guarded command. A panic in the client (a
// user's hook, say) becomes the command's error instead of crashing the
// process, as it would on a goroutine nobody can recover.
func (s *Store[T]) run(ctx context.Context, c *call) {
	defer s.pending.done()
	defer close(c.done)
	defer func() {
		if r := recover(); r != nil {
			c.err = &tiercache.PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	c.err = s.client.Process(ctx, c.cmd)
}

// pending counts the goroutines of guarded commands so that Close can wait
// for them. The zero value is ready to use.
type pending struct {
	mu     sync.Mutex
	n      int
	closed bool
	idle   chan struct{} // made by the first closeAndWait; closed when n reaches 0
}

// add counts one more goroutine, or returns false after closeAndWait.
func (p *pending) add() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.n++
	return true
}

// done counts one goroutine as ended.
func (p *pending) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n--
	if p.n == 0 && p.idle != nil {
		close(p.idle)
	}
}

// closeAndWait refuses further adds and waits until every counted
// goroutine has ended or ctx ends.
func (p *pending) closeAndWait(ctx context.Context) error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		p.idle = make(chan struct{})
		if p.n == 0 {
			close(p.idle)
		}
	}
	idle := p.idle
	p.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return contextError(ctx, nil)
	}
}
