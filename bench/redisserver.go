package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisInstallHint names the install step when redis-server is missing.
const redisInstallHint = "install it (apt-get install redis-server) or point REDIS_ADDR at a Redis the benchmark may flush"

// redisServer is a redis-server process the benchmark started, on a free
// loopback port, without persistence.
type redisServer struct {
	Addr   string
	dir    string
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
}

// startRedisServer starts redis-server on a free loopback port with
// --save "" --appendonly no and returns once it answers PING. A port taken
// between choosing and binding is retried with another.
func startRedisServer() (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("bench: redis-server not in PATH: %s", redisInstallHint)
	}
	var errs []error
	for range 5 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s, err := launchRedis(bin, port)
		if err == nil {
			return s, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("bench: finding a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func launchRedis(bin string, port int) (*redisServer, error) {
	dir, err := os.MkdirTemp("", "tiercache-bench-redis-")
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(dir, "redis.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer logFile.Close() // the child holds its own descriptor
	cmd := exec.Command(bin,
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--daemonize", "no",
	)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile // *os.File: no copying goroutine
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("bench: starting redis-server: %w", err)
	}
	s := &redisServer{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir, cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()
	client := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, DialTimeout: time.Second})
	defer client.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := client.Ping(ctx).Err()
		cancel()
		if err == nil {
			return s, nil
		}
		select {
		case <-s.exited:
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			os.RemoveAll(dir)
			return nil, fmt.Errorf("bench: redis-server on port %d exited at start: %s", port, lastLines(string(log), 5))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("bench: redis-server on port %d did not answer PING: %w", port, err)
		}
	}
}

// Stop stops the server (SIGTERM, then SIGKILL after 10 s), waits for it
// and removes its directory.
func (s *redisServer) Stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	os.RemoveAll(s.dir)
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// commandStats returns the calls of every command the server has run, by
// lower-case name, from INFO commandstats.
func commandStats(ctx context.Context, admin *redis.Client) (map[string]int64, error) {
	info, err := admin.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, fmt.Errorf("bench: INFO commandstats: %w", err)
	}
	return parseCommandStats(info), nil
}

// redisCPU returns redis-server's CPU time so far, user and system, from
// INFO cpu.
func redisCPU(ctx context.Context, admin *redis.Client) (time.Duration, error) {
	info, err := admin.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, fmt.Errorf("bench: INFO cpu: %w", err)
	}
	return parseCPU(info)
}

// parseCPU adds up the used_cpu_sys and used_cpu_user lines of INFO cpu,
// which give seconds with microsecond digits.
func parseCPU(info string) (time.Duration, error) {
	var total time.Duration
	found := 0
	for line := range strings.Lines(info) {
		name, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || (name != "used_cpu_sys" && name != "used_cpu_user") {
			continue
		}
		secs, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, fmt.Errorf("bench: INFO cpu: %s: %w", name, err)
		}
		total += time.Duration(secs * float64(time.Second))
		found++
	}
	if found != 2 {
		return 0, fmt.Errorf("bench: INFO cpu: used_cpu_sys and used_cpu_user not both found")
	}
	return total, nil
}

// parseCommandStats reads the "cmdstat_NAME:calls=N,..." lines of INFO
// commandstats.
func parseCommandStats(info string) map[string]int64 {
	stats := make(map[string]int64)
	for line := range strings.Lines(info) {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for field := range strings.SplitSeq(rest, ",") {
			if v, ok := strings.CutPrefix(field, "calls="); ok {
				if n, err := strconv.ParseInt(v, 10, 64); err == nil {
					stats[strings.TrimPrefix(name, "cmdstat_")] = n
				}
			}
		}
	}
	return stats
}

// redisVersion returns the server's version from INFO server.
func redisVersion(ctx context.Context, admin *redis.Client) string {
	info, err := admin.Info(ctx, "server").Result()
	if err != nil {
		return "unknown"
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			return v
		}
	}
	return "unknown"
}
