package redisstore

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/tiercache/tiercache/redisstore/internal/redistest"
)

// TestKeySlot checks keySlot, by which GetMany groups keys on a Cluster,
// against known values and against CLUSTER KEYSLOT on a real cluster node.
func TestKeySlot(t *testing.T) {
	for key, want := range map[string]uint16{
		"123456789":            0x31C3, // the CRC16 XMODEM check value
		"foo":                  12182,
		"{user1000}.following": 3443,
		"{user1000}.followers": 3443,
		"user1000":             3443,
		"":                     0,
		"foo{{bar}}zap":        keySlot("{bar"),
		"foo{bar}{zap}":        keySlot("bar"),
		"{users}:42":           keySlot("users"),
	} {
		if got := keySlot(key); got != want {
			t.Errorf("keySlot(%q) = %d, want %d", key, got, want)
		}
	}

	addr := redistest.ClusterAddrs(t)[0]
	keys := []string{"", "{", "}", "{}", "}{", "{a", "a}", "{}a", "a{}", "{a}", "x{a}y", "x{}y{a}", "{{a}}", "{a}{b}", "ключ", "\x00\xff", "{users}:42"}
	for i := range 300 {
		keys = append(keys, fmt.Sprintf("redisstore-test:%d:k%d", i*7919, i))
	}
	for _, key := range keys {
		reply, err := redistest.Do(addr, 5*time.Second, "CLUSTER", "KEYSLOT", key)
		if err != nil {
			t.Fatalf("CLUSTER KEYSLOT %q: %v", key, err)
		}
		want, err := strconv.Atoi(reply)
		if err != nil {
			t.Fatalf("CLUSTER KEYSLOT %q: %q", key, reply)
		}
		if got := keySlot(key); int(got) != want {
			t.Errorf("keySlot(%q) = %d, CLUSTER KEYSLOT says %d", key, got, want)
		}
	}
}
