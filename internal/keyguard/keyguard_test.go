package keyguard

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestWriteIf(t *testing.T) {
	tests := []struct {
		name      string
		between   func(g *Guard)
		wantCopy  bool // a Copy whose ticket was taken before runs
		wantStore bool // a Store whose ticket was taken before runs
	}{
		{name: "nothing in between", between: func(*Guard) {}, wantCopy: true, wantStore: true},
		{name: "a write began and ended", between: func(g *Guard) { mustBegin(g, "k"); g.End("k") }},
		{name: "a write is under way", between: func(g *Guard) { mustBegin(g, "k") }},
		{name: "a Store of the key ran", between: func(g *Guard) { g.WriteIf("k", g.Ticket("k"), Store, func() {}) }, wantStore: true},
		{name: "a Store of another key of the stripe ran", between: func(g *Guard) {
			g.WriteIf(sameStripe(g, "k"), g.Ticket("k"), Store, func() {})
		}, wantStore: true},
		{name: "a Copy of the key ran", between: func(g *Guard) { g.WriteIf("k", g.Ticket("k"), Copy, func() {}) }, wantCopy: true, wantStore: true},
		{name: "a StoreL2 of the key ran", between: func(g *Guard) { g.WriteIf("k", g.Ticket("k"), StoreL2, func() {}) }, wantStore: true},
		{name: "the key was invalidated", between: func(g *Guard) { g.Invalidate("k", func() {}) }},
		{name: "everything was invalidated", between: func(g *Guard) { g.InvalidateAll() }},
	}
	for _, tt := range tests {
		for _, m := range []struct {
			name string
			mode Mode
			want bool
		}{{"Copy", Copy, tt.wantCopy}, {"Store", Store, tt.wantStore}, {"StoreL2", StoreL2, tt.wantStore}} {
			t.Run(tt.name+"/"+m.name, func(t *testing.T) {
				g := New()
				gen := g.Ticket("k")
				tt.between(g)
				ran := false
				require.Equal(t, m.want, g.WriteIf("k", gen, m.mode, func() { ran = true }))
				require.Equal(t, m.want, ran)
			})
		}
	}
}

// sameStripe returns a key other than key on key's stripe.
func sameStripe(g *Guard, key string) string {
	for i := 0; ; i++ {
		if other := key + "-" + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676)); g.stripe(other) == g.stripe(key) {
			return other
		}
	}
}

func TestWriteTakenAfterEndRuns(t *testing.T) {
	g := New()
	mustBegin(g, "k")
	g.End("k")
	require.True(t, g.WriteIf("k", g.Ticket("k"), Copy, func() {}))
}

func TestOtherStripesUnaffected(t *testing.T) {
	g := New()
	// Find a key on another stripe than "k".
	other := "x"
	for i := 0; g.stripe(other) == g.stripe("k"); i++ {
		other = string(rune('a'+i%26)) + other
	}
	gen := g.Ticket(other)
	mustBegin(g, "k")
	defer g.End("k")
	require.True(t, g.WriteIf(other, gen, Copy, func() {}))
}

// Begin waits for a copy in progress, so the write that follows lands after
// the copy and wins; it gives up when the write's ctx ends first.
func TestBeginWaitsForCopy(t *testing.T) {
	g := New()
	var order []string
	var mu sync.Mutex
	add := func(s string) { mu.Lock(); order = append(order, s); mu.Unlock() }
	inCopy, release, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		g.WriteIf("k", g.Ticket("k"), Copy, func() {
			close(inCopy)
			<-release
			add("copy")
		})
	}()
	<-inCopy
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	_, err := g.Begin(ctx, "k")
	require.ErrorIs(t, err, context.DeadlineExceeded, "gives up with its ctx")
	began := make(chan struct{})
	go func() {
		defer close(began)
		_, err := g.Begin(context.Background(), "k")
		require.NoError(t, err)
		add("write")
		g.End("k")
	}()
	close(release)
	<-done
	<-began
	require.Equal(t, []string{"copy", "write"}, order)
}

func mustBegin(g *Guard, key string) WriteTicket {
	wt, err := g.Begin(context.Background(), key)
	if err != nil {
		panic(err)
	}
	return wt
}

// A StoreL2 under way (a slow L2 write) holds the stripe's L2 lock only:
// the stripe's L1 writes and invalidations go on, a Copy checking meanwhile
// gives way to it, and a foreground write waits for it.
func TestStoreL2UnderWay(t *testing.T) {
	g := New()
	other := sameStripe(g, "k")
	inside, release := make(chan struct{}), make(chan struct{})
	done := make(chan bool)
	go func() {
		done <- g.WriteIf("k", g.Ticket("k"), StoreL2, func() {
			close(inside)
			<-release
		})
	}()
	<-inside

	copyTicket := g.Ticket(other)
	require.True(t, g.WriteIf(other, g.Ticket(other), Store, func() {}), "an L1 store of the stripe runs")
	g.Invalidate(other, func() {}) // does not wait either
	require.False(t, g.WriteIf(other, g.Ticket(other), Copy, func() {}), "a Copy gives way to the StoreL2 under way")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := g.Begin(ctx, other)
	require.ErrorIs(t, err, context.DeadlineExceeded, "a foreground write waits for the StoreL2")

	close(release)
	require.True(t, <-done)
	require.False(t, g.WriteIf(other, copyTicket, Copy, func() {}), "a Store voids older Copies")
	require.True(t, g.WriteIf(other, g.Ticket(other), Copy, func() {}), "a Copy taken after it runs")
	mustBegin(g, other)
	g.End(other)
}

func TestWriteUnlessInvalidated(t *testing.T) {
	tests := []struct {
		name    string
		between func(g *Guard)
		want    bool
	}{
		{name: "nothing in between", between: func(*Guard) {}, want: true},
		{name: "another write of the key", between: func(g *Guard) { mustBegin(g, "k"); g.End("k") }, want: true},
		{name: "the key was invalidated", between: func(g *Guard) { g.Invalidate("k", func() {}) }, want: false},
		{name: "everything was invalidated", between: func(g *Guard) { g.InvalidateAll() }, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := New()
			wt := mustBegin(g, "k")
			tt.between(g)
			ran := false
			done, err := g.WriteUnlessInvalidated(context.Background(), "k", wt, func() { ran = true })
			require.NoError(t, err)
			require.Equal(t, tt.want, done)
			require.Equal(t, tt.want, ran)
			g.End("k")
		})
	}
}

// An invalidation waits for an L1 write in progress and evicts after it.
func TestInvalidateEvictsAfterWrite(t *testing.T) {
	g := New()
	var order []string
	var mu sync.Mutex
	add := func(s string) { mu.Lock(); order = append(order, s); mu.Unlock() }
	inWrite, release, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	wt := mustBegin(g, "k")
	go func() {
		defer close(done)
		_, _ = g.WriteUnlessInvalidated(context.Background(), "k", wt, func() { close(inWrite); <-release; add("write") })
	}()
	<-inWrite
	evicted := make(chan struct{})
	go func() { g.Invalidate("k", func() { add("evict") }); close(evicted) }()
	close(release)
	<-done
	<-evicted
	g.End("k")
	require.Equal(t, []string{"write", "evict"}, order)
}

func TestWriteManyIf(t *testing.T) {
	g := New()
	keys := []string{"a", "b", "c", "a"}
	tickets := make([]Ticket, len(keys))
	for i, k := range keys {
		tickets[i] = g.Ticket(k)
	}
	g.Invalidate("b", func() {})
	var wrote []int
	ok := g.WriteManyIf(keys, tickets, Store, func(ok []int) { wrote = ok })
	require.Equal(t, wrote, ok)
	var want []int
	for i, k := range keys {
		if g.stripe(k) != g.stripe("b") { // b, and any key sharing its stripe, was invalidated
			want = append(want, i)
		}
	}
	require.Equal(t, want, ok)
	require.False(t, g.WriteIf("a", tickets[0], Copy, func() {}), "a Store voids older Copies")
	require.True(t, g.WriteIf("a", tickets[0], Store, func() {}), "but not older Stores")
	require.Nil(t, g.WriteManyIf([]string{"b"}, tickets[1:2], Store, func([]int) { t.Fatal("must not run") }))
}

// InvalidateAll waits for an L1 write in progress, whose ticket held when
// it checked, so that the flush that follows lands after it.
func TestInvalidateAllWaitsForWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := New()
		var order []string
		var mu sync.Mutex
		add := func(s string) { mu.Lock(); order = append(order, s); mu.Unlock() }
		release, done := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			g.WriteIf("k", g.Ticket("k"), Copy, func() { <-release; add("write") })
		}()
		synctest.Wait() // the write is under way
		flushed := make(chan struct{})
		go func() { g.InvalidateAll(); add("flush"); close(flushed) }()
		synctest.Wait()
		close(release)
		<-done
		<-flushed
		require.Equal(t, []string{"write", "flush"}, order)
	})
}
