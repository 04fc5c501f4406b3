//go:build faults

package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/redisstore"
	"github.com/tiercache/tiercache/redisstore/internal/redistest"
)

// Scenario 1: Redis killed with SIGKILL mid-run and restarted 2 s later on
// the same port, empty. No GetOrLoad fails; L1 keeps answering during the
// outage; L2 is used again within a second of the restart.
func TestFaultKillRestart(t *testing.T) {
	eachFaultClient(t, func(t *testing.T, fc faultClient) {
		srv := redistest.Start(t)
		r := newRig(t, rigOptions{addr: srv.Addr, client: fc, breaker: faultBreaker})
		ru := r.run(workload{})

		ru.sleepUntil(500 * time.Millisecond)
		warm := r.cache.Stats()
		warmAt := ru.now()
		ru.sleepUntil(1500 * time.Millisecond)
		beforeKill := r.cache.Stats()
		killAt := ru.now()
		require.NoError(t, srv.Kill())
		ru.sleepUntil(killAt + 2*time.Second)
		beforeRestart := r.cache.Stats()
		outage := ru.now() - killAt
		require.NoError(t, srv.Restart())
		restartAt := ru.now()

		// When is L2 back: a read that succeeds (hit or miss), a hit, the
		// breaker closed again.
		var used, hit, closed time.Duration = -1, -1, -1
		for ru.now() < restartAt+3*time.Second && (used < 0 || hit < 0 || closed < 0) {
			s := r.cache.Stats()
			at := ru.now() - restartAt
			if used < 0 && s.L2.Hits+s.L2.Misses > beforeRestart.L2.Hits+beforeRestart.L2.Misses {
				used = at
			}
			if hit < 0 && s.L2.Hits > beforeRestart.L2.Hits {
				hit = at
			}
			if closed < 0 && s.Breaker.State == tiercache.BreakerClosed && s.Breaker.Closes > beforeRestart.Breaker.Closes {
				closed = at
			}
			time.Sleep(5 * time.Millisecond)
		}
		ru.sleepUntil(restartAt + 2*time.Second)
		ru.finish()
		end := r.cache.Stats()

		rateBefore := float64(beforeKill.L1.Hits-warm.L1.Hits) / (killAt - warmAt).Seconds()
		rateOutage := float64(beforeRestart.L1.Hits-beforeKill.L1.Hits) / outage.Seconds()
		late99, lateMax := ru.lateness(killAt, restartAt)
		kv := append(ru.callKV(), latencyKV("", ru.latency(0, all))...)
		kv = append(kv, latencyKV("before_", ru.latency(0, killAt))...)
		kv = append(kv, latencyKV("outage_", ru.latency(killAt, restartAt))...)
		kv = append(kv, latencyKV("after_", ru.latency(restartAt, all))...)
		kv = append(kv,
			"outage_sched_late_p99", late99, "outage_sched_late_max", lateMax,
			"l1_hits_per_s_before", int(rateBefore), "l1_hits_per_s_outage", int(rateOutage),
			"l2_used_after_restart", used, "l2_hit_after_restart", hit, "breaker_closed_after_restart", closed,
			"breaker_opens_before_kill", beforeKill.Breaker.Opens, "breaker_opens", end.Breaker.Opens,
			"breaker_closes", end.Breaker.Closes, "breaker_rejected", end.Breaker.Rejected,
			"l2_failures", end.L2.Failures, "redis_log_lines", redisLogLines.Load())
		report(t, "kill-restart/"+fc.name, kv...)

		ru.checkCalls(t)
		require.Positive(t, rateOutage, "L1 hits during the outage")
		require.GreaterOrEqual(t, rateOutage, rateBefore/2, "L1 hits go on at the rate they had before the kill")
		require.Greater(t, end.Breaker.Opens, beforeKill.Breaker.Opens, "the breaker opened during the outage")
		require.True(t, used >= 0 && used <= time.Second, "L2 read successfully within a second of the restart (after %v)", used)
		require.True(t, hit >= 0 && hit <= time.Second, "an L2 hit within a second of the restart (after %v)", hit)
		require.True(t, closed >= 0 && closed <= time.Second, "the breaker closed within a second of the restart (after %v)", closed)
		ru.checkGoroutines(t)
	})
}

// Scenario 2: Redis frozen with SIGSTOP for 3 s, then SIGCONT. While it is
// frozen, GetOrLoad's p99 stays within L2Timeout + 20 ms and the goroutines
// stay under the ceiling; with the breaker on, and off.
func TestFaultFreeze(t *testing.T) {
	for _, b := range []struct {
		name    string
		breaker tiercache.BreakerOptions
	}{
		{"breaker-on", faultBreaker},
		{"breaker-off", tiercache.BreakerOptions{}},
	} {
		t.Run(b.name, func(t *testing.T) {
			eachFaultClient(t, func(t *testing.T, fc faultClient) {
				srv := redistest.Start(t)
				r := newRig(t, rigOptions{addr: srv.Addr, client: fc, breaker: b.breaker})
				ru := r.run(workload{})

				ru.sleepUntil(time.Second)
				before := r.cache.Stats()
				freezeAt := ru.now()
				require.NoError(t, srv.Freeze())
				ru.sleepUntil(freezeAt + 3*time.Second)
				require.NoError(t, srv.Thaw())
				thawAt := ru.now()
				frozenStats := r.cache.Stats()
				ru.sleepUntil(thawAt + time.Second)
				ru.finish()
				end := r.cache.Stats()

				frozen := ru.latency(freezeAt, thawAt)
				late99, lateMax := ru.lateness(freezeAt, thawAt)
				kv := append(ru.callKV(), latencyKV("", ru.latency(0, all))...)
				kv = append(kv, latencyKV("frozen_", frozen)...)
				kv = append(kv,
					"frozen_sched_late_p99", late99, "frozen_sched_late_max", lateMax,
					"goroutines_max_frozen", ru.goroutinesMax(freezeAt, thawAt+500*time.Millisecond),
					"l2_failures_frozen", frozenStats.L2.Failures-before.L2.Failures,
					"breaker_opens", end.Breaker.Opens, "breaker_closes", end.Breaker.Closes, "breaker_rejected", end.Breaker.Rejected,
					"offload_rejected", end.OffloadRejected, "write_errors", end.WriteErrors)
				report(t, "freeze/"+b.name+"/"+fc.name, kv...)

				ru.checkCalls(t)
				require.LessOrEqual(t, frozen.p99, faultL2Timeout+20*time.Millisecond, "p99 of GetOrLoad while Redis is frozen")
				ru.checkGoroutines(t)
			})
		})
	}
}

// Scenario 3: a TCP proxy between the client and Redis adds latency, cuts
// replies in the middle and resets connections, one fault after another,
// healing in between, then all at once. No call outlives its deadline or
// fails, nothing panics, and the breaker opens under each fault and closes
// after each heal.
func TestFaultProxy(t *testing.T) {
	type phase struct {
		name   string
		faults redistest.Faults
		d      time.Duration
		opens  bool // the breaker must open during the phase
		heals  bool // the breaker must be closed at the end of the phase
	}
	phases := []phase{
		{"healthy", redistest.Faults{}, 500 * time.Millisecond, false, false}, // a cold pool may open the breaker on a busy machine
		{"latency-100ms", redistest.Faults{Latency: 100 * time.Millisecond}, time.Second, true, false},
		{"healed", redistest.Faults{}, 700 * time.Millisecond, false, true},
		{"cut-replies", redistest.Faults{CutReplies: 1}, 700 * time.Millisecond, true, false},
		{"healed", redistest.Faults{}, 700 * time.Millisecond, false, true},
		{"resets", redistest.Faults{ResetRequests: 1}, 700 * time.Millisecond, true, false},
		{"healed", redistest.Faults{}, 700 * time.Millisecond, false, true},
		{"mixed", redistest.Faults{Latency: 20 * time.Millisecond, CutReplies: 0.2, ResetRequests: 0.2}, time.Second, false, false},
		{"healed", redistest.Faults{}, time.Second, false, true},
	}
	eachFaultClient(t, func(t *testing.T, fc faultClient) {
		srv := redistest.Start(t)
		proxy := redistest.StartProxy(t, srv.Addr)
		errs := &errorKinds{}
		r := newRig(t, rigOptions{addr: proxy.Addr, client: fc, breaker: faultBreaker, hook: errs})
		ru := r.run(workload{})

		type outcome struct {
			from, to      time.Duration
			before, after tiercache.Stats
		}
		outcomes := make([]outcome, len(phases))
		at := time.Duration(0)
		phaseErrs := make([]string, len(phases))
		for i, p := range phases {
			o := outcome{from: ru.now(), before: r.cache.Stats()}
			proxy.SetFaults(p.faults)
			errs.reset()
			at += p.d
			ru.sleepUntil(at)
			o.to, o.after = ru.now(), r.cache.Stats()
			outcomes[i] = o
			phaseErrs[i] = errs.String()
		}
		ru.finish()
		end := r.cache.Stats()
		ps := proxy.Stats()

		kv := append(ru.callKV(), latencyKV("", ru.latency(0, all))...)
		kv = append(kv,
			"l2_failures", end.L2.Failures, "l2_p99", end.L2.Latency.P99, "l2_p999", end.L2.Latency.P999,
			"breaker_opens", end.Breaker.Opens, "breaker_closes", end.Breaker.Closes, "breaker_rejected", end.Breaker.Rejected,
			"proxy_conns", ps.Accepted, "proxy_cut", ps.Cut, "proxy_reset", ps.Reset)
		for i, p := range phases {
			o := outcomes[i]
			name := fmt.Sprintf("%d-%s_", i, p.name)
			kv = append(kv, latencyKV(name, ru.latency(o.from, o.to))...)
			kv = append(kv, name+"opens", o.after.Breaker.Opens-o.before.Breaker.Opens, name+"closes", o.after.Breaker.Closes-o.before.Breaker.Closes,
				name+"state", o.after.Breaker.State, name+"client_errors", phaseErrs[i])
		}
		report(t, "proxy/"+fc.name, kv...)

		ru.checkCalls(t)
		for i, p := range phases {
			o := outcomes[i]
			if p.opens {
				require.Greater(t, o.after.Breaker.Opens, o.before.Breaker.Opens, "phase %d (%s): the breaker opened", i, p.name)
			}
			if p.heals && (o.before.Breaker.State != tiercache.BreakerClosed || o.after.Breaker.State != tiercache.BreakerClosed) {
				require.Greater(t, o.after.Breaker.Closes, o.before.Breaker.Closes, "phase %d (%s): a probe closed the breaker after the proxy healed", i, p.name)
			}
		}
		require.GreaterOrEqual(t, end.Breaker.Opens, uint64(3))
		require.GreaterOrEqual(t, end.Breaker.Closes, uint64(3))
		// Healed and without load, the breaker ends closed.
		require.True(t, assertEventually(2*time.Second, func() bool {
			_, _, err := r.cache.Get(context.Background(), "after")
			return err == nil && r.cache.Stats().Breaker.State == tiercache.BreakerClosed
		}), "the breaker closes once the proxy has healed")
		ru.checkGoroutines(t)
	})
}

// errorKinds is a go-redis hook counting the errors of commands by kind.
type errorKinds struct {
	mu sync.Mutex
	n  map[string]int
}

func (h *errorKinds) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		if err != nil {
			h.add("dial:" + errorKind(err))
		}
		return c, err
	}
}

func (h *errorKinds) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err != nil && err != redis.Nil {
			h.add(strings.ToLower(cmd.Name()) + ":" + errorKind(err))
		}
		return err
	}
}

func (h *errorKinds) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h *errorKinds) add(kind string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == nil {
		h.n = map[string]int{}
	}
	h.n[kind]++
}

func (h *errorKinds) reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n = nil
}

// String returns the counts as kind:n,kind:n, sorted.
func (h *errorKinds) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var parts []string
	for k, n := range h.n {
		parts = append(parts, fmt.Sprintf("%s:%d", k, n))
	}
	slices.Sort(parts)
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ",")
}

// errorKind names the kind of a client error briefly.
func errorKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, syscall.EPIPE):
		return "broken-pipe"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, redis.ErrClosed), errors.Is(err, net.ErrClosed):
		return "closed"
	}
	return "other"
}

// hostileCase is a value written under the cache's prefix by someone else.
type hostileCase struct {
	name  string
	value []byte // nil: the 100 MiB value, built on the server
	want  error  // what the Store's Get wraps
}

// hugeValueBytes is the size of the largest hostile value.
const hugeValueBytes = 100 << 20

func hostileCases() []hostileCase {
	rng := rand.New(rand.NewPCG(7, 7))
	random := make([]byte, 256)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	random[0] = 'x' // not the magic
	entry := func(version, flags byte, payload string) []byte {
		return append([]byte{entryMagic0, entryMagic1, version, flags}, payload...)
	}
	return []hostileCase{
		{"empty", []byte{}, redisstore.ErrInvalidEntry},
		{"magic-only", []byte{entryMagic0}, redisstore.ErrInvalidEntry},
		{"truncated-header", []byte{entryMagic0, entryMagic1, entryVersion}, redisstore.ErrInvalidEntry},
		{"truncated-expire", append(entry(entryVersion, entryHasExpire, ""), 0, 0, 0), redisstore.ErrInvalidEntry},
		{"truncated-stale", append(entry(entryVersion, entryHasExpire|entryHasStale, "\x7f\x00\x00\x00\x00\x00\x00\x00"), 1, 2), redisstore.ErrInvalidEntry},
		{"random-bytes", random, redisstore.ErrInvalidEntry},
		{"foreign-json", []byte(`"intruder|foreign"`), redisstore.ErrInvalidEntry},
		{"future-version", entry(entryVersion+1, 0, `"intruder|future"`), redisstore.ErrInvalidEntry},
		{"version-zero", entry(0, 0, `"intruder|old"`), redisstore.ErrInvalidEntry},
		{"unknown-flags", entry(entryVersion, 0x80, `"intruder|flags"`), redisstore.ErrInvalidEntry},
		{"negative-with-payload", entry(entryVersion, entryNegative, `"intruder|negative"`), redisstore.ErrInvalidEntry},
		{"codec-number", entry(entryVersion, 0, `42`), redisstore.ErrInvalidEntry},
		{"codec-object", entry(entryVersion, 0, `{"Data":"intruder|object"}`), redisstore.ErrInvalidEntry},
		{"codec-garbage", entry(entryVersion, 0, `not json`), redisstore.ErrInvalidEntry},
		{"codec-unterminated", entry(entryVersion, 0, `"intruder|unterminated`), redisstore.ErrInvalidEntry},
		{"codec-trailing", entry(entryVersion, 0, `"intruder|a" "b"`), redisstore.ErrInvalidEntry},
		{"codec-msgpack", entry(entryVersion, 0, "\xa3abc"), redisstore.ErrInvalidEntry},
		{"100MiB", nil, redisstore.ErrValueTooLarge},
	}
}

// writeHostile stores c's value under the Redis key rkey.
func writeHostile(t *testing.T, admin *redis.Client, rkey string, c hostileCase) {
	t.Helper()
	ctx := context.Background()
	if c.value != nil {
		require.NoError(t, admin.Set(ctx, rkey, c.value, 0).Err())
		return
	}
	// Built on the server, so that the test does not send 100 MiB: a
	// SETRANGE past the end pads the string with zero bytes.
	require.NoError(t, admin.SetRange(ctx, rkey, hugeValueBytes-1, "x").Err())
	require.EqualValues(t, hugeValueBytes, admin.StrLen(ctx, rkey).Val())
}

// Scenario 4: hostile values under the cache's prefix. Each is a counted
// L2 failure and a miss: Get misses, GetOrLoad returns the origin's value,
// never a panic, never a value of the wrong key; the loaded value then
// replaces the hostile one in Redis.
func TestFaultHostileData(t *testing.T) {
	eachFaultClient(t, func(t *testing.T, fc faultClient) {
		srv := redistest.Start(t)
		admin := redis.NewClient(&redis.Options{Addr: srv.Addr, ReadTimeout: 30 * time.Second})
		t.Cleanup(func() { admin.Close() })
		ctx := context.Background()
		// Redis refuses strings above proto-max-bulk-len (512 MB by
		// default); make sure the 100 MiB value fits.
		cfg, err := admin.ConfigGet(ctx, "proto-max-bulk-len").Result()
		require.NoError(t, err)
		if n, _ := strconv.ParseInt(cfg["proto-max-bulk-len"], 10, 64); n < hugeValueBytes {
			require.NoError(t, admin.ConfigSet(ctx, "proto-max-bulk-len", strconv.Itoa(2*hugeValueBytes)).Err())
		}
		r := newRig(t, rigOptions{addr: srv.Addr, client: fc, breaker: faultBreaker})

		t.Run("one by one", func(t *testing.T) {
			for _, c := range hostileCases() {
				key := "hostile-" + c.name
				rkey := r.prefix + key
				writeHostile(t, admin, rkey, c)

				// The Store itself refuses it, naming the key.
				start := time.Now()
				v, err := within2(30*time.Second, func(ctx context.Context) (*tiercache.CacheValue[string], error) { return r.l2.Get(ctx, key) })
				storeGet := time.Since(start)
				require.ErrorIs(t, err, c.want, c.name)
				require.ErrorContains(t, err, strconv.Quote(rkey), c.name)
				require.Nil(t, v, c.name)

				// Get: a miss, counted as an L2 failure.
				s0 := r.cache.Stats()
				got, ok, err := r.cache.Get(ctx, key)
				require.NoError(t, err, c.name)
				require.False(t, ok, c.name)
				require.Empty(t, got, c.name)
				s1 := r.cache.Stats()
				require.Equal(t, s0.L2.Failures+1, s1.L2.Failures, "%s: Get counts an L2 failure", c.name)
				require.Equal(t, s0.L2.Hits, s1.L2.Hits, c.name)

				// GetOrLoad: the origin's value, counted as an L2 failure.
				got, err = r.cache.GetOrLoad(ctx, key, r.origin(key))
				require.NoError(t, err, c.name)
				require.Equal(t, originValue(key), got, c.name)
				s2 := r.cache.Stats()
				require.Equal(t, s1.L2.Failures+1, s2.L2.Failures, "%s: GetOrLoad counts an L2 failure", c.name)
				require.Equal(t, s1.Loads+1, s2.Loads, "%s: GetOrLoad loads", c.name)

				// The loaded value replaces the hostile one in Redis; but
				// its L2 write, under L2Timeout, may time out while Redis
				// still sends the 100 MiB value to the reads that gave up.
				replaced := func() bool {
					b, err := admin.Get(ctx, rkey).Bytes()
					if err != nil {
						return false
					}
					e, err := decodeRawEntry(b)
					return err == nil && e.data == originValue(key)
				}
				if c.value != nil {
					require.Eventually(t, replaced, 5*time.Second, 5*time.Millisecond, "%s: the loaded value is written over the hostile one", c.name)
					continue
				}
				time.Sleep(time.Second)
				report(t, "hostile/"+fc.name+"/100MiB", "store_get", storeGet, "bytes", hugeValueBytes,
					"replaced_by_loaded_value", replaced(), "write_errors", r.cache.Stats().WriteErrors)
				require.NoError(t, admin.Del(ctx, rkey).Err())
			}
		})

		// Hostile values read back to back: each is still a counted L2
		// failure and a miss, and the healthy Redis stays in use.
		t.Run("back to back", func(t *testing.T) {
			cases := hostileCases()
			cases = cases[:len(cases)-1] // the small ones
			for _, c := range cases {
				writeHostile(t, admin, r.prefix+"burst-"+c.name, c)
			}
			breakerClosed(t, r)
			s0 := r.cache.Stats()
			var uncounted []string // the reads that did not add exactly one failure, and what they added
			for _, c := range cases {
				before := r.cache.Stats().L2.Failures
				got, ok, err := r.cache.Get(ctx, "burst-"+c.name)
				require.NoError(t, err, c.name)
				require.False(t, ok, c.name)
				require.Empty(t, got, c.name)
				if d := r.cache.Stats().L2.Failures - before; d != 1 {
					uncounted = append(uncounted, fmt.Sprintf("%s:%d", c.name, d))
				}
			}
			s1 := r.cache.Stats()
			report(t, "hostile/"+fc.name+"/back-to-back", "reads", len(cases), "l2_failures", s1.L2.Failures-s0.L2.Failures,
				"breaker_opens", s1.Breaker.Opens-s0.Breaker.Opens, "breaker_rejected", s1.Breaker.Rejected-s0.Breaker.Rejected)
			require.Equal(t, s0.L2.Failures+uint64(len(cases)), s1.L2.Failures,
				"every hostile value read is a counted L2 failure (breaker opened %d times, rejected %d reads; reads that added other than one: %v)",
				s1.Breaker.Opens-s0.Breaker.Opens, s1.Breaker.Rejected-s0.Breaker.Rejected, uncounted)
			require.Equal(t, s0.Breaker.Opens, s1.Breaker.Opens, "bad values in a healthy Redis do not open the breaker")
		})

		// Under load: hostile values written over random keys while the 64
		// workers run.
		t.Run("under load", func(t *testing.T) {
			cases := hostileCases()
			cases = cases[:len(cases)-1]
			breakerClosed(t, r)
			s0 := r.cache.Stats()
			loads0 := r.loads.Load()
			ru := r.run(workload{})
			var injected atomic.Int64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(1, 2))
				tick := time.NewTicker(time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					c := cases[rng.IntN(len(cases))]
					key := faultKeyNames[rng.IntN(faultKeys)]
					if admin.Set(ctx, r.prefix+key, c.value, 0).Err() == nil {
						injected.Add(1)
					}
				}
			})
			ru.sleepUntil(3 * time.Second)
			close(stop)
			wg.Wait()
			ru.finish()
			s1 := r.cache.Stats()
			kv := append(ru.callKV(), latencyKV("", ru.latency(0, all))...)
			kv = append(kv, "injected", injected.Load(), "l2_failures", s1.L2.Failures-s0.L2.Failures,
				"l2_hits", s1.L2.Hits-s0.L2.Hits, "loads", r.loads.Load()-loads0,
				"breaker_opens", s1.Breaker.Opens-s0.Breaker.Opens, "breaker_rejected", s1.Breaker.Rejected-s0.Breaker.Rejected)
			report(t, "hostile/"+fc.name+"/under-load", kv...)
			ru.checkCalls(t)
			require.Positive(t, s1.L2.Failures-s0.L2.Failures, "hostile values were read, and counted")
			require.LessOrEqual(t, s1.L2.Failures-s0.L2.Failures, uint64(injected.Load()), "no failure but the hostile values")
			ru.checkGoroutines(t)
		})
	})
}

// breakerClosed waits until the rig's breaker is closed and has seen a
// success last.
func breakerClosed(t *testing.T, r *rig) {
	t.Helper()
	require.Eventually(t, func() bool {
		_, _, err := r.cache.Get(context.Background(), "absent")
		return err == nil && r.cache.Stats().Breaker.State == tiercache.BreakerClosed
	}, 5*time.Second, 10*time.Millisecond, "the breaker closes")
}

// within2 calls f with a ctx that ends after d.
func within2[T any](d time.Duration, f func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return f(ctx)
}

// Scenario 5: Close under load. Every Set that returned nil, before or
// while Close ran, is in Redis afterwards with its value, read back with a
// client of the test's own and decoded here; Close returns within its
// deadline. Once on a healthy Redis, and once after a freeze of Redis that
// opened the breaker for a while.
func TestFaultCloseUnderLoad(t *testing.T) {
	const closeDeadline = 2 * time.Second
	for _, v := range []struct {
		name   string
		freeze bool // freeze Redis for 600 ms, 500 ms into the run
	}{
		{"healthy", false},
		{"after-breaker-opened", true},
	} {
		t.Run(v.name, func(t *testing.T) {
			eachFaultClient(t, func(t *testing.T, fc faultClient) {
				srv := redistest.Start(t)
				r := newRig(t, rigOptions{addr: srv.Addr, client: fc, breaker: faultBreaker})
				ru := r.run(workload{ownedSets: true})
				if v.freeze {
					ru.sleepUntil(500 * time.Millisecond)
					r.markLoads.Store(true)
					require.NoError(t, srv.Freeze())
					ru.sleepUntil(1100 * time.Millisecond)
					require.NoError(t, srv.Thaw())
				}
				ru.sleepUntil(1500 * time.Millisecond)
				closeAt := ru.now()
				start := time.Now()
				closeErr := within(closeDeadline, r.cache.Close)
				took := time.Since(start)
				ru.sleepUntil(closeAt + 200*time.Millisecond) // the workers meet ErrClosed
				ru.finish()

				admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
				t.Cleanup(func() { admin.Close() })
				ctx := context.Background()
				var acked, unsure, reloaded, lost int
				var lostKeys []string
				for _, log := range ru.logs {
					for key, want := range log.acked {
						acked++
						b, err := admin.Get(ctx, r.prefix+key).Bytes()
						var e decodedEntry
						if err == nil {
							e, err = decodeRawEntry(b)
						}
						switch {
						case err == nil && e.data == want:
						case log.unsure[key] && err == nil && strings.HasPrefix(e.data, key+"|set|"):
							unsure++ // a later Set failed, and may have landed
						case v.freeze && err == nil && e.data == originValue(key) && r.loadedSinceMark(key):
							// Loaded again once Redis froze: a read whose L2
							// read failed asks the origin, and writes what it
							// answers to L2. This origin answers a fixed
							// value, older than the key's Sets; a real one
							// holds what the application last wrote.
							reloaded++
						default:
							lost++
							if len(lostKeys) < 5 {
								lostKeys = append(lostKeys, fmt.Sprintf("%s: want %q, got %q (%v)", key, want, e.data, err))
							}
						}
					}
				}
				end := r.cache.Stats()
				kv := append(ru.callKV(), latencyKV("", ru.latency(0, all))...)
				kv = append(kv, "breaker_opens", end.Breaker.Opens, "breaker_writes_skipped", end.Breaker.WritesSkipped, "l2_failures", end.L2.Failures,
					"close_took", took, "close_err", fmt.Sprintf("%q", fmt.Sprint(closeErr)),
					"acked_keys", acked, "unsure_keys", unsure, "reloaded_keys", reloaded, "lost_writes", lost, "calls_after_close", ru.closedErrs.Load())
				report(t, "close-under-load/"+v.name+"/"+fc.name, kv...)

				ru.checkCalls(t)
				require.Positive(t, acked, "Sets were acknowledged")
				require.LessOrEqual(t, took, closeDeadline+50*time.Millisecond, "Close returns within its deadline")
				require.NoError(t, closeErr, "Close finished the background work before its deadline")
				require.Positive(t, ru.closedErrs.Load(), "calls after Close return ErrClosed")
				require.Zero(t, lost, "acknowledged Sets missing from Redis (the breaker opened %d times and skipped %d L2 writes): %q",
					end.Breaker.Opens, end.Breaker.WritesSkipped, lostKeys)
				ru.checkGoroutines(t)
			})
		})
	}
}

// A Set must return by its own deadline, also when the key's L2 write of
// a value loaded just before is stuck on a frozen Redis. With L2Timeout 0
// (none, the default) and an OffloadPool without TaskTimeout (the
// default), that L2 write lasts until the client's ReadTimeout (3 s).
func TestFaultFreezeSetDeadline(t *testing.T) {
	const setDeadline = 100 * time.Millisecond
	eachFaultClient(t, func(t *testing.T, fc faultClient) {
		srv := redistest.Start(t)
		r := newRig(t, rigOptions{addr: srv.Addr, client: fc, breaker: faultBreaker, l2Timeout: -1})
		ctx := context.Background()
		// The loader freezes Redis: the L2 write of what it returns, handed
		// to the OffloadPool, meets a frozen server.
		v, err := r.cache.GetOrLoad(ctx, "k", func(context.Context) (string, error) {
			if err := srv.Freeze(); err != nil {
				return "", err
			}
			return originValue("k"), nil
		})
		require.NoError(t, err)
		require.Equal(t, originValue("k"), v)
		time.Sleep(20 * time.Millisecond) // the L2 write has begun
		setCtx, cancel := context.WithTimeout(ctx, setDeadline)
		start := time.Now()
		err = r.cache.Set(setCtx, "k", "k|set", 0)
		took := time.Since(start)
		cancel()
		require.NoError(t, srv.Thaw())
		report(t, "freeze-set-deadline/"+fc.name, "set_deadline", setDeadline, "set_took", took, "set_err", fmt.Sprintf("%q", fmt.Sprint(err)))
		require.Error(t, err, "the Set could not reach the frozen Redis")
		require.LessOrEqual(t, took, setDeadline+100*time.Millisecond, "the Set returns by its deadline")
	})
}

// faultHook is a go-redis hook that, when armed, makes commands fail, or
// panic.
type faultHook struct{ mode atomic.Int32 } // 0: pass, 1: fail, 2: panic

var errFaultHookDown = errors.New("hook: L2 down")

func (h *faultHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *faultHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		switch h.mode.Load() {
		case 1:
			return errFaultHookDown
		case 2:
			panic("hook: panic in the client")
		}
		return next(ctx, cmd)
	}
}

// ProcessPipelineHook fails or panics as ProcessHook does: a failed
// pipeline fails each of its commands (coalesced writes are pipelines).
func (h *faultHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		switch h.mode.Load() {
		case 1:
			for _, cmd := range cmds {
				cmd.SetErr(errFaultHookDown)
			}
			return errFaultHookDown
		case 2:
			panic("hook: panic in the client")
		}
		return next(ctx, cmds)
	}
}

// A client that panics (a hook, say) while the breaker probes L2 is a
// failed probe: the breaker opens again, and closes once L2 answers again.
// The panic reaches no caller.
func TestFaultBreakerProbePanics(t *testing.T) {
	eachFaultClient(t, func(t *testing.T, fc faultClient) {
		srv := redistest.Start(t)
		hook := &faultHook{}
		r := newRig(t, rigOptions{addr: srv.Addr, client: fc, breaker: faultBreaker, hook: hook})
		ctx := context.Background()
		hook.mode.Store(1)
		for i := range faultBreaker.Failures {
			_, _, err := r.cache.Get(ctx, fmt.Sprint("down", i))
			require.NoError(t, err)
		}
		require.Equal(t, tiercache.BreakerOpen, r.cache.Stats().Breaker.State)
		time.Sleep(faultBreaker.CoolDown + 50*time.Millisecond)
		hook.mode.Store(2)
		_, _, err := r.cache.Get(ctx, "probe") // the probe panics
		require.NoError(t, err, "a panic in L2 is that layer's failure, not the caller's")
		hook.mode.Store(0)
		var s tiercache.Stats
		closed := assertEventually(3*time.Second, func() bool {
			_, _, err := r.cache.Get(ctx, "up")
			s = r.cache.Stats()
			return err == nil && s.Breaker.State == tiercache.BreakerClosed
		})
		report(t, "breaker-probe-panics/"+fc.name, "closed_again", closed, "state", s.Breaker.State,
			"opens", s.Breaker.Opens, "closes", s.Breaker.Closes, "rejected", s.Breaker.Rejected)
		require.True(t, closed, "the breaker closes again once L2 answers (state %v, %d L2 operations rejected)", s.Breaker.State, s.Breaker.Rejected)
	})
}

// assertEventually reports whether cond held within d, trying every 10 ms.
func assertEventually(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); ; time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// stalledL1 is an L1 whose Set blocks until release is closed (or its ctx
// ends): a stuck in-process cache.
type stalledL1 struct {
	tiercache.Backend[string]
	release chan struct{}
	blocked atomic.Int64 // Sets waiting now

	mu          sync.Mutex
	blockedKeys []string // the keys of the Sets that waited
}

func (s *stalledL1) Set(ctx context.Context, key string, v tiercache.CacheValue[string]) error {
	select {
	case <-s.release:
	default:
		s.blocked.Add(1)
		defer s.blocked.Add(-1)
		s.mu.Lock()
		s.blockedKeys = append(s.blockedKeys, key)
		s.mu.Unlock()
		select {
		case <-s.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.Backend.Set(ctx, key, v)
}

func (s *stalledL1) keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.blockedKeys...)
}

// populate stores n entries in Redis, server-side: key prefix+"m"+i holds
// an entry of the JSON string "o"+i, without Expire.
func populate(t *testing.T, admin *redis.Client, prefix string, n int) {
	t.Helper()
	const script = `
for i = tonumber(ARGV[2]), tonumber(ARGV[3]) - 1 do
	redis.call('SET', KEYS[1] .. i, ARGV[1] .. '"o' .. i .. '"')
end
return 0`
	header := string(rawEntry(time.Time{}, nil))
	for from := 0; from < n; from += 100_000 {
		to := min(n, from+100_000)
		require.NoError(t, admin.Eval(context.Background(), script, []string{prefix + "m"}, header, from, to).Err())
	}
}

// Scenario 6: overload. L1's Set is stalled, and a million Gets of
// distinct keys hit L2, each asking the Offload (8 running, 64 queued) for
// a refill into L1. The refills past the queue are rejected and counted;
// the goroutines and the heap stay bounded; every caller gets its value
// and returns by its deadline; everything drains once L1 is released.
func TestFaultOverload(t *testing.T) {
	const (
		gets       = 1_000_000
		warm       = 10_000 // Gets before the heap is measured
		getters    = 256    // a Get waits for Redis most of its time: many at once
		running    = 8
		queued     = 64
		heapGrowth = 16 << 20 // bound on HeapInuse after the Gets, over after the warm ones
		heapPeak   = 128 << 20
	)
	srv := redistest.Start(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr, ReadTimeout: time.Minute})
	t.Cleanup(func() { admin.Close() })
	stall := &stalledL1{release: make(chan struct{})}
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(stall.release) }) }
	t.Cleanup(release)
	r := newRig(t, rigOptions{
		addr:      srv.Addr,
		client:    faultClient{name: "ctx-timeout-client", ctxTimeout: true},
		breaker:   faultBreaker,
		offload:   tiercache.OffloadOptions{MaxConcurrent: running, MaxQueued: queued},
		l2Timeout: time.Second, // a slow Get under this load is not the subject
		poolSize:  getters,
		wrapL1: func(l1 tiercache.Backend[string]) tiercache.Backend[string] {
			stall.Backend = l1
			return stall
		},
	})
	populateStart := time.Now()
	populate(t, admin, r.prefix, gets)
	populateTook := time.Since(populateStart)
	// Start from a collected heap: the garbage of populate, and a GC goal
	// set by whatever ran before this test, are not the Gets' doing.
	runtime.GC()

	smp := startSampler(func(base int) int { return r.goroutineCeiling(base, getters) }, true)
	var next, misses, wrong, failed, overdue atomic.Int64
	var errMu sync.Mutex
	var someErrs []string
	var heapBefore uint64
	getsStart := time.Now()
	// The first warm Gets fill the client's pool and the Offload's queue;
	// the heap is measured after them, then after the rest.
	for _, upTo := range []int64{warm, gets} {
		var wg sync.WaitGroup
		for range getters {
			wg.Go(func() {
				for {
					i := next.Add(1) - 1
					if i >= upTo {
						next.Add(-1)
						return
					}
					key := "m" + strconv.FormatInt(i, 10)
					ctx, cancel := context.WithTimeout(context.Background(), faultCallTimeout)
					start := time.Now()
					v, ok, err := r.cache.Get(ctx, key)
					if time.Since(start) > faultCallTimeout+50*time.Millisecond {
						overdue.Add(1)
					}
					cancel()
					switch {
					case err != nil:
						failed.Add(1)
						errMu.Lock()
						if len(someErrs) < 5 {
							someErrs = append(someErrs, fmt.Sprintf("%s: %v", key, err))
						}
						errMu.Unlock()
					case !ok:
						misses.Add(1)
					case v != "o"+strconv.FormatInt(i, 10):
						wrong.Add(1)
					}
				}
			})
		}
		wg.Wait()
		if upTo == warm {
			heapBefore = heapInUse()
		}
	}
	getsTook := time.Since(getsStart)
	stalled := r.cache.Stats()
	poolStalled := r.pool.Stats()
	heapAfter := heapInUse()
	gmaxStalled := smp.goroutinesMax(0, all)
	heapMaxStalled := smp.heapMax(0, all)

	// While L1 is stalled: Sets of the keys whose refills are stuck in L1,
	// and of other keys, return by their deadline, failing (L1 cannot be
	// written) or not.
	const setDeadline = 100 * time.Millisecond
	stuckKeys := stall.keys()
	setKeys := append([]string(nil), stuckKeys...)
	for i := range 2000 {
		setKeys = append(setKeys, "other"+strconv.Itoa(i))
	}
	var setsReturned atomic.Int64
	var setLate atomic.Int64
	var setsWG sync.WaitGroup
	setCh := make(chan string)
	for range getters {
		setsWG.Go(func() {
			for key := range setCh {
				ctx, cancel := context.WithTimeout(context.Background(), setDeadline)
				start := time.Now()
				_ = r.cache.Set(ctx, key, key+"|set", 0)
				if time.Since(start) > setDeadline+200*time.Millisecond {
					setLate.Add(1)
				}
				cancel()
				setsReturned.Add(1)
			}
		})
	}
	go func() {
		defer close(setCh)
		for _, k := range setKeys {
			setCh <- k
		}
	}()
	setsTimedOut := false
	setsDone := make(chan struct{})
	go func() {
		setsWG.Wait()
		close(setsDone)
	}()
	select {
	case <-setsDone:
	case <-time.After(10 * time.Second):
		setsTimedOut = true
	}
	setsHanging := int64(len(setKeys)) - setsReturned.Load()

	// Release L1: everything accepted drains.
	releaseAt := smp.now()
	release()
	<-setsDone
	require.NoError(t, within(10*time.Second, r.pool.Wait))
	drained := r.cache.Stats()
	var settled time.Duration = -1
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if runtime.NumGoroutine() <= smp.base {
			settled = smp.now() - releaseAt
			break
		}
	}
	smp.finish()
	late99, lateMax := smp.lateness(0, releaseAt)

	report(t, "overload",
		"gets", gets, "getters", getters, "gets_took", getsTook, "gets_per_s", int(float64(gets)/getsTook.Seconds()),
		"populate_took", populateTook, "failed", failed.Load(), "misses", misses.Load(), "wrong", wrong.Load(), "overdue", overdue.Load(),
		"l2_hits", stalled.L2.Hits, "offload_rejected", stalled.OffloadRejected, "refills_stalled", len(stuckKeys),
		"offload_running", poolStalled.Running, "offload_queued", poolStalled.Queued,
		"refills_after_release", drained.Refills, "refills_skipped", drained.RefillsSkipped,
		"goroutines_base", smp.base, "goroutines_max", gmaxStalled, "goroutines_ceiling", smp.ceiling,
		"heap_after_warm_mib", mib(heapBefore), "heap_after_mib", mib(heapAfter), "heap_peak_mib", mib(uint64(heapMaxStalled)),
		"sets_while_stalled", len(setKeys), "sets_hanging", setsHanging, "sets_late", setLate.Load(),
		"goroutines_settled_after_release", settled, "sched_late_p99", late99, "sched_late_max", lateMax)

	require.Zero(t, failed.Load(), "failed Gets; some: %q", someErrs)
	require.Zero(t, misses.Load(), "Gets that missed")
	require.Zero(t, wrong.Load(), "wrong values")
	require.Zero(t, overdue.Load(), "Gets that outlived their deadline")
	require.EqualValues(t, gets, stalled.L2.Hits, "every Get hit L2")
	require.EqualValues(t, gets-running-queued, stalled.OffloadRejected, "refills past the running and queued ones are rejected")
	// Every slot is held by a refill that waits in L1: in L1's Set, or for
	// the key guard's stripe that another one, in L1's Set, holds (two keys
	// of the 8 share one of the 1,024 stripes about one run in 40).
	require.Equal(t, running, poolStalled.Running, "the running refills wait in L1")
	require.Equal(t, queued, poolStalled.Queued, "the queue is full")
	require.NotEmpty(t, stuckKeys, "refills wait in L1's Set")
	require.LessOrEqual(t, len(stuckKeys), running, "only the running refills reached L1")
	smp.checkGoroutines(t)
	require.Less(t, heapAfter, heapBefore+heapGrowth, "heap in use after the Gets, over after the warm ones")
	require.Less(t, uint64(heapMaxStalled), heapBefore+heapPeak, "heap in use during the Gets")
	require.EqualValues(t, running+queued, drained.Refills+drained.RefillsSkipped, "every accepted refill ran once L1 was released")
	require.GreaterOrEqual(t, settled, time.Duration(0), "goroutines back to %d after the release", smp.base)
	require.False(t, setsTimedOut, "Sets still running 10 s after they began while L1 was stalled: %d", setsHanging)
	require.Zero(t, setLate.Load(), "Sets that outlived their %v deadline while L1 was stalled", setDeadline)
}

// heapInUse returns HeapInuse after a garbage collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func mib(b uint64) string { return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) }
