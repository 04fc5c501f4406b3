//go:build faults

package redisstore_test

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// The fault suite writes and reads Redis values on its own, without the
// Store, so that what it checks does not depend on the code under test:
// hostile values are built byte by byte and stored values are decoded
// here, following the entry format in the package documentation.

const (
	entryMagic0, entryMagic1 = 0xC1, 0x54
	entryVersion             = 1
	entryNegative            = 0x01
	entryHasExpire           = 0x02
	entryHasStale            = 0x04
)

// rawEntry returns an entry as a Store writes it: the header (with Expire
// when expire is not zero), then payload.
func rawEntry(expire time.Time, payload []byte) []byte {
	flags := byte(0)
	if !expire.IsZero() {
		flags |= entryHasExpire
	}
	b := []byte{entryMagic0, entryMagic1, entryVersion, flags}
	if !expire.IsZero() {
		b = binary.BigEndian.AppendUint64(b, uint64(expire.UnixMilli()))
	}
	return append(b, payload...)
}

// decodedEntry is a stored entry read back by decodeRawEntry.
type decodedEntry struct {
	data     string
	negative bool
	expire   time.Time // zero: none
	stale    time.Time // zero: none
}

// decodeRawEntry decodes a stored entry of a Store[string] with the JSON
// codec.
func decodeRawEntry(b []byte) (decodedEntry, error) {
	var e decodedEntry
	if len(b) < 4 || b[0] != entryMagic0 || b[1] != entryMagic1 {
		return e, fmt.Errorf("no entry header in %q", truncate(b))
	}
	if b[2] != entryVersion {
		return e, fmt.Errorf("format version %d", b[2])
	}
	flags, rest := b[3], b[4:]
	if flags&^(entryNegative|entryHasExpire|entryHasStale) != 0 {
		return e, fmt.Errorf("unknown flags %#x", flags)
	}
	instant := func() (time.Time, error) {
		if len(rest) < 8 {
			return time.Time{}, errors.New("truncated header")
		}
		t := time.UnixMilli(int64(binary.BigEndian.Uint64(rest)))
		rest = rest[8:]
		return t, nil
	}
	var err error
	if flags&entryHasExpire != 0 {
		if e.expire, err = instant(); err != nil {
			return e, err
		}
	}
	if flags&entryHasStale != 0 {
		if e.stale, err = instant(); err != nil {
			return e, err
		}
	}
	if e.negative = flags&entryNegative != 0; e.negative {
		if len(rest) != 0 {
			return e, errors.New("negative entry with a payload")
		}
		return e, nil
	}
	if err := json.Unmarshal(rest, &e.data); err != nil {
		return e, fmt.Errorf("payload %q: %w", truncate(rest), err)
	}
	return e, nil
}

func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}
