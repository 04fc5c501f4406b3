package backendtest_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/backendtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// memBackend is a correct Backend over a map; its flaw, when set, breaks
// one rule of the contract.
type memBackend struct {
	mu   sync.Mutex
	m    map[string]tiercache.CacheValue[string]
	flaw string
}

func (b *memBackend) Get(ctx context.Context, key string) (*tiercache.CacheValue[string], error) {
	if err := ctx.Err(); err != nil && b.flaw != "ignores ctx" {
		return nil, fmt.Errorf("mem: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := b.m[b.key(key)]
	if !ok || (v.Expired(time.Now()) && b.flaw != "returns expired values") {
		return nil, nil
	}
	return &v, nil
}

func (b *memBackend) Set(ctx context.Context, key string, v tiercache.CacheValue[string]) error {
	if err := ctx.Err(); err != nil && b.flaw != "ignores ctx" {
		return fmt.Errorf("mem: %w", err)
	}
	switch b.flaw {
	case "drops Stale":
		v.Stale = time.Time{}
	case "loses Negative":
		v.Negative = false
	case "keeps seconds only":
		v.Expire = v.Expire.Truncate(time.Second)
	case "truncates big values":
		if len(v.Data) > 1<<16 {
			v.Data = v.Data[:1<<16]
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.m[b.key(key)] = v
	return nil
}

func (b *memBackend) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil && b.flaw != "ignores ctx" {
		return fmt.Errorf("mem: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.m[b.key(key)]; !ok && b.flaw == "fails deleting a missing key" {
		return fmt.Errorf("mem: no such key %q", key)
	}
	delete(b.m, b.key(key))
	return nil
}

func (b *memBackend) key(k string) string {
	if b.flaw == "truncates long keys" && len(k) > 255 {
		return k[:255]
	}
	return k
}

func TestRunPassesACorrectBackend(t *testing.T) {
	backendtest.Run(t, func(*testing.T) tiercache.Backend[string] {
		return &memBackend{m: make(map[string]tiercache.CacheValue[string])}
	})
}

// Each flawed backend is run through the suite in a child test process,
// which must fail in the check that covers the flaw.
func TestRunCatchesFlawedBackends(t *testing.T) {
	if flaw := os.Getenv("BACKENDTEST_FLAW"); flaw != "" {
		backendtest.Run(t, func(*testing.T) tiercache.Backend[string] {
			return &memBackend{m: make(map[string]tiercache.CacheValue[string]), flaw: flaw}
		})
		return
	}
	if testing.Short() {
		t.Skip("runs the suite in child processes")
	}
	flaws := []struct{ flaw, failingCheck string }{
		{"returns expired values", "ExpiredOnSetIsNeverReturned"},
		{"drops Stale", "RoundTrip"},
		{"loses Negative", "RoundTrip"},
		{"keeps seconds only", "RoundTrip"},
		{"fails deleting a missing key", "DeleteMissingKey"},
		{"ignores ctx", "CancelledContext"},
		{"truncates long keys", "Keys"},
		{"truncates big values", "ValueSizes"},
	}
	for _, f := range flaws {
		t.Run(f.flaw, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestRunCatchesFlawedBackends$", "-test.v")
			cmd.Env = append(os.Environ(), "BACKENDTEST_FLAW="+f.flaw)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the suite passed a backend that %s:\n%s", f.flaw, out)
			}
			if want := "--- FAIL: TestRunCatchesFlawedBackends/" + f.failingCheck; !strings.Contains(string(out), want) {
				t.Fatalf("the suite did not fail in %s:\n%s", f.failingCheck, out)
			}
		})
	}
}
