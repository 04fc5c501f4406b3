package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/redisstore"
)

// pipeGate is a go-redis hook that passes every pipeline of SETs and DELs,
// as its commands ("set key" or "del key", keys without their test
// prefix), through its gate. It can also fail the SET of one key (failKey)
// after Redis has run it. Single commands pass.
type pipeGate struct {
	*gate
	failKey string // set before the gate is used
}

var errInjected = errors.New("injected: the server refused this one")

func newPipeGate() *pipeGate { return &pipeGate{gate: newGate()} }

func (g *pipeGate) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook passes a SET or DEL sent alone through the gate as a single
// command.
func (g *pipeGate) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := strings.ToLower(cmd.Name()); name == "set" || name == "del" {
			key := fmt.Sprint(cmd.Args()[1])
			g.passSingle(name + " " + key[strings.LastIndex(key, ":")+1:])
		}
		return next(ctx, cmd)
	}
}

func (g *pipeGate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		var batch []string
		for _, cmd := range cmds {
			name := strings.ToLower(cmd.Name())
			if name != "set" && name != "del" { // go-redis's own (a new connection's CLIENT SETINFO)
				return next(ctx, cmds)
			}
			key := fmt.Sprint(cmd.Args()[1])
			batch = append(batch, name+" "+key[strings.LastIndex(key, ":")+1:])
		}
		g.pass(batch)
		err := next(ctx, cmds)
		for i, cmd := range cmds {
			if g.failKey != "" && batch[i] == "set "+g.failKey {
				cmd.SetErr(errInjected)
			}
		}
		return err
	}
}

// writeCoalescingStore returns a Store with one dispatcher of coalesced
// writes over a client with gate.
func writeCoalescingStore(t *testing.T, gate *pipeGate) *redisstore.Store[string] {
	t.Helper()
	return hookedStore(t, gate, redisstore.Options[string]{CoalesceWrites: 1})
}

// hookedStore returns a Store with opts over a client with hook.
func hookedStore(t *testing.T, hook redis.Hook, opts redisstore.Options[string]) *redisstore.Store[string] {
	t.Helper()
	client := newClient(t)
	client.AddHook(hook)
	s, _ := newStore(t, client, opts)
	return s
}

// holdWriter makes the Store's one write dispatcher busy: a Set of key
// "alone", sent alone as the only write in flight, is held at the gate
// until open; a Set of key "first", queued behind it, is taken by the
// dispatcher and its pipeline held at the gate. It returns the channels
// the errors of "first" and "alone" arrive on.
func holdWriter(t *testing.T, s *redisstore.Store[string], gate *pipeGate) (first, alone <-chan error) {
	t.Helper()
	alone = setAsync(context.Background(), s, "alone", tiercache.CacheValue[string]{Data: "0"})
	gate.waitEntered(t)
	first = setAsync(context.Background(), s, "first", tiercache.CacheValue[string]{Data: "1"})
	gate.waitEntered(t)
	return first, alone
}

func setAsync(ctx context.Context, s *redisstore.Store[string], key string, v tiercache.CacheValue[string]) <-chan error {
	done := make(chan error, 1)
	go func() { done <- s.Set(ctx, key, v) }()
	return done
}

// waitQueuedWrites waits until n writes are queued for the dispatcher.
func waitQueuedWrites(t *testing.T, s *redisstore.Store[string], n int) {
	t.Helper()
	waitCount(t, "queued writes", func() int { return redisstore.QueuedWrites(s) }, n)
}

// TestCoalescedWritesShareOnePipeline checks that Sets and Deletes queued
// while the dispatcher is busy go out in one pipeline, in the order they
// were queued, and that each lands and gets its own answer.
func TestCoalescedWritesShareOnePipeline(t *testing.T) {
	gate := newPipeGate()
	gate.holding = false // while the keys to delete are written
	s := writeCoalescingStore(t, gate)
	ctx := batchCtx(t)
	for _, k := range []string{"gone", "expired"} {
		require.NoError(t, s.Set(ctx, k, tiercache.CacheValue[string]{Data: "old"}))
	}
	gate.mu.Lock()
	gate.holding, gate.batches, gate.singles = true, nil, nil
	gate.mu.Unlock()
	first, alone := holdWriter(t, s, gate)

	want := []string{"set k0", "set k1", "set k2", "del gone", "del expired"}
	errs := make([]<-chan error, 0, len(want))
	for i := range 3 {
		errs = append(errs, setAsync(ctx, s, fmt.Sprint("k", i), tiercache.CacheValue[string]{Data: fmt.Sprint("v", i)}))
		waitQueuedWrites(t, s, i+1)
	}
	del := make(chan error, 1)
	go func() { del <- s.Delete(ctx, "gone") }()
	errs = append(errs, del)
	waitQueuedWrites(t, s, 4)
	errs = append(errs, setAsync(ctx, s, "expired", tiercache.CacheValue[string]{Data: "x", Expire: time.Now().Add(-time.Second)}))
	waitQueuedWrites(t, s, 5)
	gate.next() // the held Set
	require.NoError(t, receive(t, first, "the held Set"))
	gate.open()
	for i, ch := range errs {
		require.NoError(t, receive(t, ch, want[i]), want[i])
	}
	require.NoError(t, receive(t, alone, "the Set sent alone"))

	batches := gate.recorded()
	require.Len(t, batches, 2, "the held Set's pipeline and one for every write queued behind it")
	assert.Equal(t, []string{"set alone"}, gate.recordedSingles(), "the one write in flight went alone, the others queued")
	assert.Equal(t, want, batches[1], "one pipeline, in the order the writes were queued")
	for i := range 3 {
		v, err := s.Get(ctx, fmt.Sprint("k", i))
		require.NoError(t, err)
		require.NotNil(t, v)
		assert.Equal(t, fmt.Sprint("v", i), v.Data)
	}
	for _, k := range []string{"gone", "expired"} {
		v, err := s.Get(ctx, k)
		require.NoError(t, err)
		assert.Nil(t, v, k)
	}
}

// TestCoalescedWriteFailsAlone checks that a write the server refuses fails
// its own caller only, with an error naming its key.
func TestCoalescedWriteFailsAlone(t *testing.T) {
	gate := newPipeGate()
	gate.failKey = "bad"
	s := writeCoalescingStore(t, gate)
	ctx := batchCtx(t)
	first, alone := holdWriter(t, s, gate)
	good := setAsync(ctx, s, "good", tiercache.CacheValue[string]{Data: "g"})
	waitQueuedWrites(t, s, 1)
	bad := setAsync(ctx, s, "bad", tiercache.CacheValue[string]{Data: "b"})
	waitQueuedWrites(t, s, 2)
	gate.open()
	require.NoError(t, receive(t, first, "the held Set"))
	require.NoError(t, receive(t, alone, "the Set sent alone"))
	require.NoError(t, receive(t, good, "the good Set"))
	err := receive(t, bad, "the refused Set")
	require.ErrorIs(t, err, errInjected)
	assert.True(t, strings.HasPrefix(err.Error(), "redisstore: set "), err)
	assert.Contains(t, err.Error(), ":bad")
	require.Len(t, gate.recorded(), 2)
}

// TestCoalescedWriteLeavesWhenItsCtxEnds checks that a write whose ctx ends
// while it is queued returns ctx's error at once and is not sent, and that
// it does not fail the others of its batch.
func TestCoalescedWriteLeavesWhenItsCtxEnds(t *testing.T) {
	gate := newPipeGate()
	s := writeCoalescingStore(t, gate)
	first, alone := holdWriter(t, s, gate)

	leaverCtx, cancel := context.WithCancelCause(context.Background())
	leaver := setAsync(leaverCtx, s, "leaver", tiercache.CacheValue[string]{Data: "l"})
	waitQueuedWrites(t, s, 1)
	stayer := setAsync(batchCtx(t), s, "stayer", tiercache.CacheValue[string]{Data: "s"})
	waitQueuedWrites(t, s, 2)
	cause := errors.New("the request went away")
	cancel(cause)
	err := receive(t, leaver, "a queued write whose ctx ended")
	require.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, err, cause)

	gate.open()
	require.NoError(t, receive(t, first, "the held Set"))
	require.NoError(t, receive(t, alone, "the Set sent alone"))
	require.NoError(t, receive(t, stayer, "the write that stayed"), "a caller that left does not fail its batch")
	batches := gate.recorded()
	require.Len(t, batches, 2)
	assert.Equal(t, []string{"set stayer"}, batches[1], "the write whose caller left is not sent")
	v, err := s.Get(batchCtx(t), "leaver")
	require.NoError(t, err)
	assert.Nil(t, v)
}

// coalescedOps are the two kinds of coalesced request, for the tests that
// hold for both: each makes a Store with one dispatcher behind a holding
// gate, holds a request sent alone and the dispatcher with a first queued
// request, and starts others.
var coalescedOps = []struct {
	name   string
	store  func(t *testing.T) (*redisstore.Store[string], *gate)
	hold   func(t *testing.T, s *redisstore.Store[string], g *gate) (first, alone <-chan error)
	start  func(ctx context.Context, s *redisstore.Store[string], key string) <-chan error
	queued func(t *testing.T, s *redisstore.Store[string], n int)
}{
	{
		name: "Get",
		store: func(t *testing.T) (*redisstore.Store[string], *gate) {
			g := newMGETGate()
			s, _, _ := coalescingStore(t, g)
			return s, g.gate
		},
		hold: func(t *testing.T, s *redisstore.Store[string], g *gate) (first, alone <-chan error) {
			return holdDispatcher(t, s, &mgetGate{g})
		},
		start:  getAsync,
		queued: waitQueued,
	},
	{
		name: "write",
		store: func(t *testing.T) (*redisstore.Store[string], *gate) {
			g := newPipeGate()
			return writeCoalescingStore(t, g), g.gate
		},
		hold: func(t *testing.T, s *redisstore.Store[string], g *gate) (first, alone <-chan error) {
			return holdWriter(t, s, &pipeGate{gate: g})
		},
		start: func(ctx context.Context, s *redisstore.Store[string], key string) <-chan error {
			return setAsync(ctx, s, key, tiercache.CacheValue[string]{Data: key})
		},
		queued: waitQueuedWrites,
	},
}

// TestCoalescedClose checks, for Gets and writes, that Close makes queued
// requests return ErrClosed, answers the batch in flight, and waits for
// the dispatcher; and that a request after Close is refused.
func TestCoalescedClose(t *testing.T) {
	for _, op := range coalescedOps {
		t.Run(op.name, func(t *testing.T) {
			s, g := op.store(t)
			first, alone := op.hold(t, s, g)
			queued := op.start(batchCtx(t), s, "queued")
			op.queued(t, s, 1)

			closed := make(chan error, 1)
			go func() { closed <- s.Close(batchCtx(t)) }()
			assert.ErrorIs(t, receive(t, queued, "a queued request at Close"), redisstore.ErrClosed)
			select {
			case err := <-closed:
				t.Fatalf("Close returned (%v) with a batch in flight", err)
			case <-time.After(20 * time.Millisecond):
			}
			g.open()
			assert.NoError(t, receive(t, first, "the request in flight at Close"), "a batch in flight is answered")
			assert.NoError(t, receive(t, alone, "the request sent alone before Close"))
			assert.NoError(t, receive(t, closed, "Close"))
			assert.ErrorIs(t, receive(t, op.start(batchCtx(t), s, "after"), "a request after Close"), redisstore.ErrClosed)
		})
	}
}

// TestCoalescedPanicIsContained checks, for Gets and writes, that a panic
// while a dispatcher sends (in a client hook) fails that batch's requests
// with a tiercache.PanicError and leaves the coalescer serving.
func TestCoalescedPanicIsContained(t *testing.T) {
	for _, op := range coalescedOps {
		t.Run(op.name, func(t *testing.T) {
			s, g := op.store(t)
			first, alone := op.hold(t, s, g)
			g.setPanics(true)
			panicking := op.start(batchCtx(t), s, "k")
			op.queued(t, s, 1)
			g.next() // first's batch goes; the next one panics
			require.NoError(t, receive(t, first, "the batch before the panic"))
			var pe *tiercache.PanicError
			require.ErrorAs(t, receive(t, panicking, "a request meeting the panic"), &pe)
			assert.Equal(t, "hook panics", pe.Value)

			g.setPanics(false)
			after := op.start(batchCtx(t), s, "after") // queued: alone is still in flight
			g.waitEntered(t)
			g.open()
			require.NoError(t, receive(t, after, "a request queued after the panic"))
			require.NoError(t, receive(t, alone, "the request sent alone"))
			assert.Len(t, g.recorded(), 3, "first's batch, the one that panicked, and after's")
		})
	}
}

// TestCoalescersExitWhenIdle checks that the dispatchers of a Store that
// coalesces are gone once no request is queued, without Close, and come
// back for the next requests.
func TestCoalescersExitWhenIdle(t *testing.T) {
	for _, op := range coalescedOps {
		t.Run(op.name, func(t *testing.T) {
			s, g := op.store(t)
			g.open()
			ctx := batchCtx(t)
			for round := range 2 {
				before := runtime.NumGoroutine()
				errs := make([]<-chan error, 32)
				for i := range errs {
					errs[i] = op.start(ctx, s, fmt.Sprint("k", i))
				}
				for i, ch := range errs {
					require.NoError(t, receive(t, ch, fmt.Sprint("request ", i)))
				}
				require.NotEmpty(t, g.recorded(), "round %d: some requests were queued and sent in batches", round)
				// Polled on this goroutine: testify's Eventually adds its own.
				for deadline := time.Now().Add(10 * time.Second); runtime.NumGoroutine() > before; time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						buf := make([]byte, 1<<20)
						t.Fatalf("round %d: %d goroutines, %d before the requests:\n%s", round, runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
					}
				}
			}
		})
	}
}

// TestCoalescingBeginsWithTheSecondRequest checks, for Gets and writes,
// that a request which finds no other in flight goes alone, and that one
// which finds another queues for a dispatcher, however many dispatchers
// the Store may run.
func TestCoalescingBeginsWithTheSecondRequest(t *testing.T) {
	for _, c := range []struct {
		name  string
		store func(t *testing.T) (*redisstore.Store[string], *gate)
		start func(ctx context.Context, s *redisstore.Store[string], key string) <-chan error
	}{
		{
			name: "Get",
			store: func(t *testing.T) (*redisstore.Store[string], *gate) {
				g := newMGETGate()
				return hookedStore(t, g, redisstore.Options[string]{CoalesceGets: 4}), g.gate
			},
			start: getAsync,
		},
		{
			name: "write",
			store: func(t *testing.T) (*redisstore.Store[string], *gate) {
				g := newPipeGate()
				return hookedStore(t, g, redisstore.Options[string]{CoalesceWrites: 4}), g.gate
			},
			start: func(ctx context.Context, s *redisstore.Store[string], key string) <-chan error {
				return setAsync(ctx, s, key, tiercache.CacheValue[string]{Data: key})
			},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, g := c.store(t)
			t.Cleanup(g.open) // on failure too: nothing stays held at the gate
			alone := c.start(batchCtx(t), s, "alone")
			g.waitEntered(t)
			second := c.start(batchCtx(t), s, "second")
			g.waitEntered(t)
			assert.Len(t, g.recordedSingles(), 1, "the first request went alone")
			require.Len(t, g.recorded(), 1, "the second, finding the first in flight, went through a dispatcher")
			assert.Len(t, g.recorded()[0], 1)
			g.open()
			require.NoError(t, receive(t, alone, "the request sent alone"))
			require.NoError(t, receive(t, second, "the queued request"))
		})
	}
}

// heldPipelineClient is a client whose first Pipeline call is held until
// release is closed: the goroutine of a guarded pipeline that has not yet
// queued its commands when its batch's deadline passes. Its Store takes
// the guarded path, as over any client of a type of its own.
type heldPipelineClient struct {
	*redis.Client
	once    sync.Once
	entered chan struct{} // closed when the first Pipeline call is held
	release chan struct{}
}

func (c *heldPipelineClient) Pipeline() redis.Pipeliner {
	held := false
	c.once.Do(func() { held = true })
	if held {
		close(c.entered)
		<-c.release
	}
	return c.Client.Pipeline()
}

// abandonHook holds the SET of key "alone" sent alone until aloneGo is
// closed, and each pipeline of SETs whose ctx is live, once it has run,
// until liveGo is closed; it sends the keys of each pipeline whose ctx had
// ended on expired, once it has run.
type abandonHook struct {
	aloneIn, aloneGo chan struct{}
	liveRan, liveGo  chan struct{}
	expired          chan []string
}

func (h *abandonHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *abandonHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if strings.ToLower(cmd.Name()) == "set" && strings.HasSuffix(fmt.Sprint(cmd.Args()[1]), ":alone") {
			close(h.aloneIn)
			<-h.aloneGo
		}
		return next(ctx, cmd)
	}
}

func (h *abandonHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		var keys []string
		for _, cmd := range cmds {
			if strings.ToLower(cmd.Name()) != "set" { // go-redis's own
				return next(ctx, cmds)
			}
			key := fmt.Sprint(cmd.Args()[1])
			keys = append(keys, key[strings.LastIndex(key, ":")+1:])
		}
		ended := ctx.Err() != nil
		err := next(ctx, cmds)
		if ended {
			h.expired <- keys
		} else {
			h.liveRan <- struct{}{}
			<-h.liveGo
		}
		return err
	}
}

// TestCoalescedWriteAbandonedPipelineKeepsItsCommands checks that a batch
// of writes abandoned at its deadline, whose guarded pipeline has not yet
// queued its commands, queues its own commands when it does, not those of
// the next batch the dispatcher gathers meanwhile: the next batch's writes
// must get their own answers, not the abandoned pipeline's error.
func TestCoalescedWriteAbandonedPipelineKeepsItsCommands(t *testing.T) {
	h := &abandonHook{
		aloneIn: make(chan struct{}), aloneGo: make(chan struct{}),
		liveRan: make(chan struct{}, 1), liveGo: make(chan struct{}),
		expired: make(chan []string, 1),
	}
	client := newClient(t)
	client.AddHook(h)
	hc := &heldPipelineClient{Client: client, entered: make(chan struct{}), release: make(chan struct{})}
	s, err := redisstore.New(hc, &redisstore.Options[string]{KeyPrefix: newPrefix(t, client), CoalesceWrites: 1})
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, s.Close(context.Background()))
	})
	release := sync.OnceFunc(func() { close(hc.release) })
	unblock := sync.OnceFunc(func() { release(); close(h.liveGo); close(h.aloneGo) })
	t.Cleanup(unblock)

	alone := setAsync(context.Background(), s, "alone", tiercache.CacheValue[string]{Data: "0"})
	receive(t, h.aloneIn, "the Set sent alone")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	first := setAsync(ctx, s, "a", tiercache.CacheValue[string]{Data: "A"})
	receive(t, hc.entered, "the pipeline of the first batch")
	second := setAsync(batchCtx(t), s, "b", tiercache.CacheValue[string]{Data: "B"})
	waitQueuedWrites(t, s, 1)

	require.ErrorIs(t, receive(t, first, "the Set whose batch was abandoned"), context.DeadlineExceeded)
	receive(t, h.liveRan, "the pipeline of the second batch") // it ran, and is held before its answers are read
	release()
	assert.Equal(t, []string{"a"}, receive(t, h.expired, "the abandoned pipeline"), "the abandoned pipeline queued the commands of its own batch")
	unblock()
	assert.NoError(t, receive(t, second, "the Set of the second batch"), "the second batch's Set has its own answer")
	require.NoError(t, receive(t, alone, "the Set sent alone"))
}
