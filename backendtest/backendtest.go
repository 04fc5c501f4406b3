// Package backendtest is the conformance suite of tiercache.Backend: what
// every layer a tiercache.Cache composes must do. A Backend author runs it
// from a test:
//
//	func TestConformance(t *testing.T) {
//		backendtest.Run(t, func(t *testing.T) tiercache.Backend[string] {
//			return newEmptyStore(t) // a fresh, empty backend for each check
//		})
//	}
//
// It checks that a miss is (nil, nil); that Set and Get round-trip Data,
// Expire, Stale (to the millisecond) and Negative; that an expired value is
// never returned and a value without Expire does not expire; Delete, also of
// a missing key; overwriting, including an expiring value by one that does
// not expire; concurrent use (run it with -race); that a cancelled or
// expired ctx is honoured; keys with spaces, unicode and 1 KiB of length;
// and values of 0 bytes and 1 MiB.
//
// Memory is an in-memory Backend that passes the suite, for the tests of
// code built on a Cache: values can be put in it and looked at, and its
// operations made to fail.
//
// The suite uses only the standard library, so running it adds nothing to
// a module's dependencies. Some checks wait in real time for a value to
// expire (under a second each).
package backendtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tiercache/tiercache"
)

// ExpiryWait is how long the expiry checks give a backend to drop a value
// once its Expire has passed; a backend that expires entries lazily on read
// needs none of it.
const ExpiryWait = 2 * time.Second

// Run runs every check against backends made by newBackend, each check in a
// subtest with a fresh backend. newBackend should register its own cleanup
// with t.Cleanup.
func Run(t *testing.T, newBackend func(t *testing.T) tiercache.Backend[string]) {
	checks := []struct {
		name string
		run  func(t *testing.T, b tiercache.Backend[string])
	}{
		{"MissIsNilNil", checkMiss},
		{"RoundTrip", checkRoundTrip},
		{"ExpiredOnSetIsNeverReturned", checkExpiredOnSet},
		{"ExpiresAtExpire", checkExpiresAtExpire},
		{"NoExpireDoesNotExpire", checkNoExpire},
		{"Delete", checkDelete},
		{"DeleteMissingKey", checkDeleteMissing},
		{"Overwrite", checkOverwrite},
		{"OverwriteRemovesExpiry", checkOverwriteRemovesExpiry},
		{"Keys", checkKeys},
		{"ValueSizes", checkValueSizes},
		{"CancelledContext", checkCancelledContext},
		{"ExpiredDeadline", checkExpiredDeadline},
		{"Concurrent", checkConcurrent},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			b := newBackend(t)
			if b == nil {
				t.Fatal("backendtest: newBackend returned nil")
			}
			c.run(t, b)
		})
	}
}

// ms truncates t to the millisecond, the precision the suite asks for.
func ms(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return time.UnixMilli(t.UnixMilli())
}

// sameValue reports how got differs from want, or "" when they agree to the
// millisecond.
func sameValue(got *tiercache.CacheValue[string], want tiercache.CacheValue[string]) string {
	if got == nil {
		return "got a miss"
	}
	var diffs []string
	if got.Data != want.Data {
		diffs = append(diffs, fmt.Sprintf("Data: got %s, want %s", abbrev(got.Data), abbrev(want.Data)))
	}
	if !ms(got.Expire).Equal(ms(want.Expire)) {
		diffs = append(diffs, fmt.Sprintf("Expire: got %v, want %v", got.Expire, want.Expire))
	}
	if !ms(got.Stale).Equal(ms(want.Stale)) {
		diffs = append(diffs, fmt.Sprintf("Stale: got %v, want %v", got.Stale, want.Stale))
	}
	if got.Negative != want.Negative {
		diffs = append(diffs, fmt.Sprintf("Negative: got %v, want %v", got.Negative, want.Negative))
	}
	return strings.Join(diffs, "; ")
}

func abbrev(s string) string {
	if len(s) > 40 {
		return fmt.Sprintf("%q... (%d bytes)", s[:40], len(s))
	}
	return fmt.Sprintf("%q", s)
}

func mustSet(t *testing.T, b tiercache.Backend[string], key string, v tiercache.CacheValue[string]) {
	t.Helper()
	if err := b.Set(context.Background(), key, v); err != nil {
		t.Fatalf("Set(%s): %v", abbrev(key), err)
	}
}

func mustGet(t *testing.T, b tiercache.Backend[string], key string) *tiercache.CacheValue[string] {
	t.Helper()
	v, err := b.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%s): %v", abbrev(key), err)
	}
	return v
}

func requireValue(t *testing.T, b tiercache.Backend[string], key string, want tiercache.CacheValue[string]) {
	t.Helper()
	if diff := sameValue(mustGet(t, b, key), want); diff != "" {
		t.Fatalf("Get(%s): %s", abbrev(key), diff)
	}
}

func requireMiss(t *testing.T, b tiercache.Backend[string], key string) {
	t.Helper()
	if v := mustGet(t, b, key); v != nil {
		t.Fatalf("Get(%s): got %+v, want a miss (nil, nil)", abbrev(key), *v)
	}
}

func checkMiss(t *testing.T, b tiercache.Backend[string]) {
	requireMiss(t, b, "never-set")
}

func checkRoundTrip(t *testing.T, b tiercache.Backend[string]) {
	now := time.Now()
	cases := []struct {
		name string
		v    tiercache.CacheValue[string]
	}{
		{"data only", tiercache.CacheValue[string]{Data: "plain"}},
		{"expire", tiercache.CacheValue[string]{Data: "expiring", Expire: now.Add(time.Hour)}},
		{"expire and stale", tiercache.CacheValue[string]{Data: "both", Expire: now.Add(time.Hour), Stale: now.Add(time.Minute)}},
		{"stale only", tiercache.CacheValue[string]{Data: "stale-only", Stale: now.Add(time.Minute)}},
		{"stale in the past", tiercache.CacheValue[string]{Data: "due", Expire: now.Add(time.Hour), Stale: now.Add(-time.Minute)}},
		{"sub-millisecond instants", tiercache.CacheValue[string]{Data: "fine", Expire: now.Add(time.Hour + 123456789*time.Nanosecond), Stale: now.Add(987654321 * time.Nanosecond)}},
		{"negative", tiercache.CacheValue[string]{Negative: true, Expire: now.Add(time.Minute)}},
		{"negative without expire", tiercache.CacheValue[string]{Negative: true}},
	}
	for i, c := range cases {
		key := fmt.Sprintf("round-trip-%d", i)
		mustSet(t, b, key, c.v)
		if diff := sameValue(mustGet(t, b, key), c.v); diff != "" {
			t.Errorf("%s: %s", c.name, diff)
		}
	}
}

func checkExpiredOnSet(t *testing.T, b tiercache.Backend[string]) {
	mustSet(t, b, "expired", tiercache.CacheValue[string]{Data: "old", Expire: time.Now().Add(-time.Second)})
	requireMiss(t, b, "expired")

	mustSet(t, b, "replaced-by-expired", tiercache.CacheValue[string]{Data: "live"})
	mustSet(t, b, "replaced-by-expired", tiercache.CacheValue[string]{Data: "dead", Expire: time.Now().Add(-time.Millisecond)})
	requireMiss(t, b, "replaced-by-expired")
}

func checkExpiresAtExpire(t *testing.T, b tiercache.Backend[string]) {
	expire := time.Now().Add(200 * time.Millisecond)
	v := tiercache.CacheValue[string]{Data: "short", Expire: expire}
	mustSet(t, b, "short", v)
	if got := mustGet(t, b, "short"); got != nil {
		if diff := sameValue(got, v); diff != "" {
			t.Fatalf("before Expire: %s", diff)
		}
	} else if time.Now().Before(expire) {
		t.Fatal("before Expire: got a miss")
	}
	time.Sleep(time.Until(expire))
	deadline := time.Now().Add(ExpiryWait)
	for {
		got := mustGet(t, b, "short")
		if got == nil {
			return
		}
		if got.Expired(time.Now()) {
			t.Fatalf("Get returned a value whose Expire %v has passed", got.Expire)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the value is still returned %v after its Expire", time.Since(expire))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func checkNoExpire(t *testing.T, b tiercache.Backend[string]) {
	v := tiercache.CacheValue[string]{Data: "forever"}
	mustSet(t, b, "forever", v)
	time.Sleep(300 * time.Millisecond)
	requireValue(t, b, "forever", v)
}

func checkDelete(t *testing.T, b tiercache.Backend[string]) {
	mustSet(t, b, "gone", tiercache.CacheValue[string]{Data: "x"})
	mustSet(t, b, "kept", tiercache.CacheValue[string]{Data: "y"})
	if err := b.Delete(context.Background(), "gone"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	requireMiss(t, b, "gone")
	requireValue(t, b, "kept", tiercache.CacheValue[string]{Data: "y"})
}

func checkDeleteMissing(t *testing.T, b tiercache.Backend[string]) {
	if err := b.Delete(context.Background(), "never-set"); err != nil {
		t.Fatalf("Delete of a missing key: %v, want nil", err)
	}
}

func checkOverwrite(t *testing.T, b tiercache.Backend[string]) {
	now := time.Now()
	first := tiercache.CacheValue[string]{Data: "first", Expire: now.Add(time.Hour), Stale: now.Add(time.Minute)}
	second := tiercache.CacheValue[string]{Data: "second", Expire: now.Add(2 * time.Hour)}
	mustSet(t, b, "k", first)
	mustSet(t, b, "k", second)
	requireValue(t, b, "k", second)
	negative := tiercache.CacheValue[string]{Negative: true, Expire: now.Add(time.Minute)}
	mustSet(t, b, "k", negative)
	requireValue(t, b, "k", negative)
}

func checkOverwriteRemovesExpiry(t *testing.T, b tiercache.Backend[string]) {
	mustSet(t, b, "k", tiercache.CacheValue[string]{Data: "short", Expire: time.Now().Add(150 * time.Millisecond)})
	forever := tiercache.CacheValue[string]{Data: "forever"}
	mustSet(t, b, "k", forever)
	time.Sleep(300 * time.Millisecond)
	requireValue(t, b, "k", forever)
}

func checkKeys(t *testing.T, b tiercache.Backend[string]) {
	keys := []string{
		"with spaces in it",
		"ünïcödé-キー-🔑",
		"colons:and{braces}",
		strings.Repeat("k", 1024),
	}
	for i, key := range keys {
		v := tiercache.CacheValue[string]{Data: fmt.Sprintf("value %d", i)}
		mustSet(t, b, key, v)
	}
	for i, key := range keys {
		requireValue(t, b, key, tiercache.CacheValue[string]{Data: fmt.Sprintf("value %d", i)})
	}
	requireMiss(t, b, strings.Repeat("k", 1023)) // the whole key counts, not a prefix
	if err := b.Delete(context.Background(), keys[3]); err != nil {
		t.Fatalf("Delete of a 1 KiB key: %v", err)
	}
	requireMiss(t, b, keys[3])
}

func checkValueSizes(t *testing.T, b tiercache.Backend[string]) {
	empty := tiercache.CacheValue[string]{Data: "", Expire: time.Now().Add(time.Hour)}
	mustSet(t, b, "empty", empty)
	requireValue(t, b, "empty", empty)

	big := tiercache.CacheValue[string]{Data: strings.Repeat("0123456789abcdef", 1<<16)} // 1 MiB
	mustSet(t, b, "big", big)
	requireValue(t, b, "big", big)
}

func checkCancelledContext(t *testing.T, b tiercache.Backend[string]) {
	mustSet(t, b, "k", tiercache.CacheValue[string]{Data: "before"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Get(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a cancelled ctx: got %v, want an error wrapping context.Canceled", err)
	}
	if err := b.Set(ctx, "k", tiercache.CacheValue[string]{Data: "after"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Set with a cancelled ctx: got %v, want an error wrapping context.Canceled", err)
	}
	if err := b.Delete(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Delete with a cancelled ctx: got %v, want an error wrapping context.Canceled", err)
	}
	requireValue(t, b, "k", tiercache.CacheValue[string]{Data: "before"})
}

func checkExpiredDeadline(t *testing.T, b tiercache.Backend[string]) {
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if _, err := b.Get(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Get past its deadline: got %v, want an error wrapping context.DeadlineExceeded", err)
	}
	if err := b.Set(ctx, "k", tiercache.CacheValue[string]{Data: "late"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Set past its deadline: got %v, want an error wrapping context.DeadlineExceeded", err)
	}
	requireMiss(t, b, "k")
}

func checkConcurrent(t *testing.T, b tiercache.Backend[string]) {
	const workers, rounds = 8, 200
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			own := fmt.Sprintf("own-%d", w)
			for i := range rounds {
				shared := fmt.Sprintf("shared-%d", i%5)
				v := tiercache.CacheValue[string]{Data: fmt.Sprintf("%d-%d", w, i), Expire: time.Now().Add(time.Hour)}
				if err := b.Set(ctx, own, v); err != nil {
					errs <- fmt.Errorf("Set(%s): %w", own, err)
					return
				}
				got, err := b.Get(ctx, own)
				if err != nil {
					errs <- fmt.Errorf("Get(%s): %w", own, err)
					return
				}
				if diff := sameValue(got, v); diff != "" {
					errs <- fmt.Errorf("Get(%s) right after its Set: %s", own, diff)
					return
				}
				var opErr error
				switch i % 3 {
				case 0:
					opErr = b.Set(ctx, shared, v)
				case 1:
					_, opErr = b.Get(ctx, shared)
				case 2:
					opErr = b.Delete(ctx, shared)
				}
				if opErr != nil {
					errs <- fmt.Errorf("on %s: %w", shared, opErr)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
