// Package redistest runs real Redis servers for the tests of redisstore:
// a redis-server on a free loopback port with persistence off, a
// three-node Redis Cluster, SIGSTOP/SIGCONT to freeze and thaw them, and
// SIGKILL and a restart on the same port to crash and bring back a server.
//
// A test package uses it from TestMain, which stops the shared servers when
// the package's tests end:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(redistest.Main(m)) }
//
// and then, in a test:
//
//	addr := redistest.Addr(t)          // the package's shared server
//	addrs := redistest.ClusterAddrs(t) // the package's shared cluster
//	srv := redistest.Start(t)          // a server of this test's own, to freeze or kill
//	c := redistest.StartCluster(t)     // a cluster of this test's own
//
// RunServer and RunCluster do the same outside a test; their caller stops
// what they start.
//
// Environment:
//
//   - REDIS_ADDR (host:port) points Addr at an existing server instead of
//     starting one; REDIS_CLUSTER_ADDRS (comma-separated) does the same for
//     ClusterAddrs. Tests must then keep to keys of their own.
//   - Where redis-server (and, for a cluster, redis-cli) is not in PATH and
//     no address is given, the test is skipped with one line naming the
//     install step (apt-get install redis-server), unless CI is set: then it
//     fails.
//
// Servers started here run `redis-server --port P --bind 127.0.0.1 --save ""
// --appendonly no --dir D` in a temporary directory D that Stop removes; on
// Linux the kernel kills them too if the test binary dies first (strictly,
// when the OS thread that started them exits, which the Go runtime does not
// do to a test's threads).
package redistest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// Environment variables read by this package.
const (
	// EnvAddr names an existing Redis server (host:port) for Addr.
	EnvAddr = "REDIS_ADDR"
	// EnvClusterAddrs names the nodes of an existing Redis Cluster
	// (host:port,host:port,...) for ClusterAddrs.
	EnvClusterAddrs = "REDIS_CLUSTER_ADDRS"
	// EnvCI, when set, turns a skip for want of redis-server into a failure.
	EnvCI = "CI"
)

// installHint is the install step a skipped test names.
const installHint = "apt-get install redis-server"

// Runner runs a package's tests and then stops the servers shared by them.
// It satisfies goleak.TestingM.
type Runner struct{ m *testing.M }

// Main wraps m so that the servers Addr and ClusterAddrs start are stopped
// (and their directories removed) when the tests end, before goleak looks
// for leaked goroutines:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(redistest.Main(m)) }
//
// Without goleak: os.Exit(redistest.Main(m).Run()).
func Main(m *testing.M) *Runner { return &Runner{m: m} }

// Run runs the tests, stops the shared servers and returns the exit code,
// which is non-zero also when a server failed to stop.
func (r *Runner) Run() int {
	code := r.m.Run()
	if err := stopShared(); err != nil {
		os.Stderr.WriteString("redistest: " + err.Error() + "\n")
		if code == 0 {
			code = 1
		}
	}
	return code
}

// shared holds the servers started on first use by Addr and ClusterAddrs.
var shared struct {
	mu         sync.Mutex
	server     *Server
	serverErr  error
	cluster    *Cluster
	clusterErr error
}

func stopShared() error {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	var errs []error
	if shared.server != nil {
		errs = append(errs, shared.server.Stop())
		shared.server = nil
	}
	if shared.cluster != nil {
		errs = append(errs, shared.cluster.Stop())
		shared.cluster = nil
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stopping the shared servers: %w", err)
	}
	return nil
}

// Addr returns the address of the server shared by the package's tests:
// REDIS_ADDR when set, otherwise a redis-server started on first use and
// stopped by Main's Run. It skips tb (fails it under CI) when there is
// neither, and fails tb when the server cannot be started.
func Addr(tb testing.TB) string {
	tb.Helper()
	if addr := os.Getenv(EnvAddr); addr != "" {
		return addr
	}
	need(tb, EnvAddr, "redis-server")
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.server == nil && shared.serverErr == nil {
		shared.server, shared.serverErr = RunServer()
	}
	if shared.serverErr != nil {
		tb.Fatalf("redistest: %v", shared.serverErr)
	}
	return shared.server.Addr
}

// ClusterAddrs returns the addresses of the nodes of the three-node Redis
// Cluster shared by the package's tests: REDIS_CLUSTER_ADDRS when set,
// otherwise a cluster started on first use and stopped by Main's Run. It
// skips tb (fails it under CI) when redis-server or redis-cli is missing,
// and fails tb when the cluster cannot be started.
func ClusterAddrs(tb testing.TB) []string {
	tb.Helper()
	if addrs := os.Getenv(EnvClusterAddrs); addrs != "" {
		return strings.Split(addrs, ",")
	}
	need(tb, EnvClusterAddrs, "redis-server", "redis-cli")
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.cluster == nil && shared.clusterErr == nil {
		shared.cluster, shared.clusterErr = RunCluster(3)
	}
	if shared.clusterErr != nil {
		tb.Fatalf("redistest: %v", shared.clusterErr)
	}
	return shared.cluster.Addrs()
}

// Start starts a redis-server of tb's own, which tb may freeze, and stops
// it when tb ends. It skips tb (fails it under CI) when redis-server is
// missing: a server named by REDIS_ADDR cannot be frozen.
func Start(tb testing.TB) *Server {
	tb.Helper()
	need(tb, "", "redis-server")
	s, err := RunServer()
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Stop(); err != nil {
			tb.Errorf("redistest: %v", err)
		}
	})
	return s
}

// StartCluster starts a three-node Redis Cluster of tb's own, whose nodes
// tb may freeze, and stops it when tb ends. It skips tb (fails it under CI)
// when redis-server or redis-cli is missing.
func StartCluster(tb testing.TB) *Cluster {
	tb.Helper()
	need(tb, "", "redis-server", "redis-cli")
	c, err := RunCluster(3)
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	tb.Cleanup(func() {
		if err := c.Stop(); err != nil {
			tb.Errorf("redistest: %v", err)
		}
	})
	return c
}

// need skips tb, or fails it when CI is set, unless every named binary is
// in PATH. env, when not empty, names the variable that would have given an
// existing server instead.
func need(tb testing.TB, env string, bins ...string) {
	tb.Helper()
	for _, bin := range bins {
		if _, err := exec.LookPath(bin); err != nil {
			msg := "redistest: " + bin + " not in PATH"
			if env != "" {
				msg += " and " + env + " unset"
			}
			msg += ": " + installHint
			if os.Getenv(EnvCI) != "" {
				tb.Fatal(msg)
			}
			tb.Skip(msg)
		}
	}
}
