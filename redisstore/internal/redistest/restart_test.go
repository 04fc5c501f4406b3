package redistest_test

import (
	"testing"
	"time"

	"github.com/tiercache/tiercache/redisstore/internal/redistest"
)

func TestKillRestart(t *testing.T) {
	s := redistest.Start(t)
	if got, err := s.Do("SET", "k", "v"); err != nil || got != "OK" {
		t.Fatalf("SET: %q, %v", got, err)
	}
	if err := s.Restart(); err == nil {
		t.Fatal("Restart of a running server succeeded")
	}
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := redistest.Do(s.Addr, time.Second, "PING"); err == nil {
		t.Fatal("a killed server answered")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Do("GET", "k"); err != nil || got != "" {
		t.Fatalf("GET after Restart: %q, %v; want an empty server", got, err)
	}
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := s.Kill(); err != nil {
		t.Fatalf("second Kill: %v", err)
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Do("PING"); err != nil || got != "PONG" {
		t.Fatalf("PING after the second Restart: %q, %v", got, err)
	}
}
