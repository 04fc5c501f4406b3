// Policies shows tiercache's read policies side by side on the same two
// simulated layers.
//
// L1 answers in about 50µs and L2 in about 1ms. They hold copies of
// different freshness, as a busy service's layers do:
//
//	key  L1                  L2
//	ada  v1, expires in 10s  v2, expires in 60s
//	bob  -                   v2, expires in 60s
//	cy   -                   v2, expires in 60s
//	dee  v1, expired 1s ago  -
//	eve  -                   -
//
// Every key is read through SequentialReadPolicy, ParallelReadPolicy and
// three configurations of RaceReadPolicy: the losing read handed to an
// OffloadPool (the default), the losing read cancelled (LoserCancel), and L2
// started only if L1 has not hit within 200µs (HedgeAfter). Each read prints
// one row: its latency, the layer that served it, what each layer's read came
// to and why. Each policy ends with a summary: the mean latency, how many
// reads L2 served, and how many L2 reads the policy started, which is the
// load it puts on the shared layer.
//
// Run it with `make demo-policies`, or with `go run ./policies` in the examples module.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/tiercache/tiercache"
)

// The simulated layers' round trips.
const (
	l1Delay = 50 * time.Microsecond
	l2Delay = time.Millisecond
)

// readTimeout is the deadline the demo gives each read.
var readTimeout = 100 * time.Millisecond

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "policies:", err)
		os.Exit(1)
	}
}

// A contender is a read policy and how the demo names it.
type contender struct {
	label  string // the table's policy column
	name   string // the configuration, as Go code
	policy tiercache.ReadPolicy[string]
}

var contenders = []contender{
	{"sequential", "SequentialReadPolicy{}", tiercache.SequentialReadPolicy[string]{}},
	{"parallel", "ParallelReadPolicy{}", tiercache.ParallelReadPolicy[string]{}},
	{"race", "RaceReadPolicy{}", tiercache.RaceReadPolicy[string]{}},
	{"race-cancel", "RaceReadPolicy{Loser: LoserCancel}",
		tiercache.RaceReadPolicy[string]{Loser: tiercache.LoserCancel}},
	{"race-hedge", "RaceReadPolicy{HedgeAfter: 200µs}",
		tiercache.RaceReadPolicy[string]{HedgeAfter: 200 * time.Microsecond}},
}

// A fixture is one key and the copy each layer holds of it; nil means none.
type fixture struct {
	key    string
	l1, l2 *tiercache.CacheValue[string]
}

// fixtures returns the demo's keys. L1's copies are older than L2's and
// expire sooner; dee's has expired but is not evicted yet, so L1 still
// returns it and the policies must treat it as a miss.
func fixtures(now time.Time) []fixture {
	soon, later := now.Add(10*time.Second), now.Add(time.Minute)
	return []fixture{
		{key: "ada", l1: cached("v1", soon), l2: cached("v2", later)},
		{key: "bob", l2: cached("v2", later)},
		{key: "cy", l2: cached("v2", later)},
		{key: "dee", l1: cached("v1", now.Add(-time.Second))},
		{key: "eve"},
	}
}

func cached(data string, expire time.Time) *tiercache.CacheValue[string] {
	return &tiercache.CacheValue[string]{Data: data, Expire: expire}
}

// layer is a simulated cache layer: fixed values, each answered after a
// fixed delay.
type layer struct {
	delay  time.Duration
	values map[string]tiercache.CacheValue[string]
}

func newLayer(delay time.Duration, data []fixture, pick func(fixture) *tiercache.CacheValue[string]) *layer {
	l := &layer{delay: delay, values: make(map[string]tiercache.CacheValue[string])}
	for _, f := range data {
		if v := pick(f); v != nil {
			l.values[f.key] = *v
		}
	}
	return l
}

// read is the layer's tiercache.ReadFunc. Like a real client, it gives up
// as soon as ctx ends, which is how a cancelled race loser stops.
func (l *layer) read(ctx context.Context, key string) (*tiercache.CacheValue[string], error) {
	if err := wait(ctx, l.delay); err != nil {
		return nil, err
	}
	v, ok := l.values[key]
	if !ok {
		return nil, nil
	}
	return &v, nil
}

// wait returns after d, or with ctx's error when ctx ends first. It spins,
// yielding the processor, rather than sleeping: a Go timer may fire up to a
// millisecond late (the runtime's poller sleeps in whole milliseconds on
// Linux), which would blur a 50µs layer into a 1ms one.
func wait(ctx context.Context, d time.Duration) error {
	for end := time.Now().Add(d); time.Now().Before(end); runtime.Gosched() {
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// The columns of the reads table.
const rowFormat = "%-11s  %-4s %8s  %-6s  %-5s  %-9s  %-9s  %s\n"

// run reads every fixture through every contender and writes the report to w.
func run(ctx context.Context, w io.Writer) (err error) {
	now := time.Now()
	data := fixtures(now)
	l1 := newLayer(l1Delay, data, func(f fixture) *tiercache.CacheValue[string] { return f.l1 })
	l2 := newLayer(l2Delay, data, func(f fixture) *tiercache.CacheValue[string] { return f.l2 })

	// The pool owns the race losers it is handed; Close waits for them.
	pool := tiercache.NewOffloadPool(tiercache.OffloadOptions{MaxConcurrent: 4, TaskTimeout: time.Second})
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		err = errors.Join(err, pool.Close(closeCtx))
	}()

	fmt.Fprintf(w, "L1 answers in about %v, L2 in about %v. What each layer holds:\n\n", l1Delay, l2Delay)
	fmt.Fprintf(w, "  %-4s  %-20s  %s\n", "key", "L1", "L2")
	for _, f := range data {
		fmt.Fprintf(w, "  %-4s  %-20s  %s\n", f.key, describe(f.l1, now), describe(f.l2, now))
	}
	fmt.Fprintln(w)

	fmt.Fprintf(w, rowFormat, "policy", "key", "latency", "source", "value", "L1", "L2", "why")
	for _, c := range contenders {
		if err := readAll(ctx, w, c, data, l1, l2, pool); err != nil {
			return err
		}
	}
	return nil
}

// readAll reads every fixture through c, writing a row per read and then
// c's summary.
func readAll(ctx context.Context, w io.Writer, c contender, data []fixture, l1, l2 *layer, pool *tiercache.OffloadPool) error {
	var total time.Duration
	var servedByL2, l2Reads, offloaded, timedOut int
	for _, f := range data {
		before := pool.Stats().Accepted
		res, latency, err := readOnce(ctx, c.policy, f.key, l1, l2, pool)
		// A read past its own deadline (a busy machine) is a row like any
		// other; any other error, or the caller's ctx ending, stops the demo.
		late := err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded)
		if err != nil && !late {
			return fmt.Errorf("%s: %w", c.label, err)
		}
		handedOff := pool.Stats().Accepted > before

		total += latency
		if res.Source == tiercache.L2 {
			servedByL2++
		}
		if res.L2.Status != tiercache.StatusNotRun {
			l2Reads++
		}
		if handedOff {
			offloaded++
		}
		value := "-"
		if res.Value != nil {
			value = res.Value.Data
		}
		reason := why(res, f, handedOff)
		if late {
			timedOut++
			reason = fmt.Sprintf("no answer within %v", readTimeout)
		}
		fmt.Fprintf(w, rowFormat, c.label, f.key, micros(latency), res.Source, value,
			res.L1.Status, res.L2.Status, reason)
	}
	fmt.Fprintf(w, "  %s: mean %s, L2 served %d of %d reads, L2 read %d times",
		c.name, micros(total/time.Duration(len(data))), servedByL2, len(data), l2Reads)
	if offloaded > 0 {
		fmt.Fprintf(w, ", losers offloaded: %d", offloaded)
	}
	if timedOut > 0 {
		fmt.Fprintf(w, ", timed out: %d", timedOut)
	}
	fmt.Fprint(w, "\n\n")
	return nil
}

// readOnce reads key through p, as a request handler would, and times the
// call as its caller sees it.
func readOnce(ctx context.Context, p tiercache.ReadPolicy[string], key string, l1, l2 *layer, off tiercache.Offload) (tiercache.ReadResult[string], time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	start := time.Now()
	res, err := p.Read(ctx, key, l1.read, l2.read, off)
	return res, time.Since(start), err
}

// why explains a read's outcome from its result and what the layers held.
// handedOff says whether the policy gave the losing read to the Offload.
func why(res tiercache.ReadResult[string], f fixture, handedOff bool) string {
	l1Missed := "L1 missed"
	if f.l1 != nil && f.l1.Expired(time.Now()) {
		l1Missed = "L1 expired"
	}
	loser := "cancelled"
	if handedOff {
		loser = "offloaded"
	}
	s1, s2 := res.L1.Status, res.L2.Status
	switch res.Source {
	case tiercache.L1:
		switch s2 {
		case tiercache.StatusNotRun:
			return "L1 hit, L2 not read"
		case tiercache.StatusAbandoned:
			return "L1 won the race, L2 " + loser
		case tiercache.StatusHit:
			return "both hit, L1 expires no sooner"
		}
		return "L1 hit, L2 " + s2.String()
	case tiercache.L2:
		switch s1 {
		case tiercache.StatusHit:
			return "both hit, L2 expires later"
		case tiercache.StatusAbandoned:
			return "L2 won the race, L1 " + loser
		case tiercache.StatusMiss:
			return l1Missed + " → L2"
		}
		return "L1 " + s1.String() + " → L2"
	}
	if s1 == tiercache.StatusMiss && s2 == tiercache.StatusMiss {
		if l1Missed == "L1 expired" {
			return "L1 expired, L2 missed too"
		}
		return "in neither layer"
	}
	return fmt.Sprintf("no value: L1 %v, L2 %v", s1, s2)
}

// describe summarises a layer's copy of a key for the fixtures table.
func describe(v *tiercache.CacheValue[string], now time.Time) string {
	switch {
	case v == nil:
		return "-"
	case v.Expired(now):
		return fmt.Sprintf("%s, expired %s ago", v.Data, seconds(now.Sub(v.Expire)))
	}
	return fmt.Sprintf("%s, expires in %s", v.Data, seconds(v.Expire.Sub(now)))
}

// seconds formats d in whole seconds.
func seconds(d time.Duration) string {
	return fmt.Sprintf("%ds", int64(d.Round(time.Second)/time.Second))
}

// micros formats d in whole microseconds, so that the column compares at a
// glance.
func micros(d time.Duration) string {
	return fmt.Sprintf("%dµs", d.Microseconds())
}
