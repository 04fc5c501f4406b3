package redistest_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache/redisstore/internal/redistest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(redistest.Main(m)) }

func TestStartFreezeThaw(t *testing.T) {
	s := redistest.Start(t)
	if got, err := s.Do("SET", "k", "v"); err != nil || got != "OK" {
		t.Fatalf("SET: %q, %v", got, err)
	}
	if err := s.Freeze(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if got, err := redistest.Do(s.Addr, 200*time.Millisecond, "PING"); err == nil {
		t.Fatalf("a frozen server answered %q", got)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("a command against the frozen server took %v", d)
	}
	if err := s.Thaw(); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Do("GET", "k"); err != nil || got != "v" {
		t.Fatalf("GET after Thaw: %q, %v", got, err)
	}
	if got, err := s.Do("GET", "missing"); err != nil || got != "" {
		t.Fatalf("GET of a missing key: %q, %v", got, err)
	}
}

func TestStopFrozen(t *testing.T) {
	s := redistest.Start(t)
	if err := s.Freeze(); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := redistest.Do(s.Addr, time.Second, "PING"); err == nil {
		t.Fatal("a stopped server answered")
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestAddr(t *testing.T) {
	addr := redistest.Addr(t)
	if again := redistest.Addr(t); again != addr {
		t.Fatalf("Addr: %s, then %s; want one shared server", addr, again)
	}
	if got, err := redistest.Do(addr, 5*time.Second, "PING"); err != nil || got != "PONG" {
		t.Fatalf("PING: %q, %v", got, err)
	}
}

func TestClusterAddrs(t *testing.T) {
	addrs := redistest.ClusterAddrs(t)
	if len(addrs) != 3 {
		t.Fatalf("ClusterAddrs: %v, want 3 nodes", addrs)
	}
	for _, a := range addrs {
		info, err := redistest.Do(a, 5*time.Second, "CLUSTER", "INFO")
		if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:3") {
			t.Fatalf("CLUSTER INFO of %s: %v\n%s", a, err, info)
		}
	}
}
