package redisstore

import (
	"cmp"
	"encoding/binary"
	"errors"
	"slices"
)

// The invalidation message, as published on the channel (see the package
// documentation):
//
//	offset  size  field
//	0       2     magic 0xC1 0x49
//	2       1     format version, 1
//	3       1     kind: 1 keys, 2 flush
//	4       8     the sending Invalidator's id, big-endian
//	12      rest  kind keys: one or more groups, each
//	                uvarint  the id of the subscription that announced them
//	                uvarint  n, at least 1
//	                n times: uvarint length, then the key's bytes
//	              kind flush: nothing
const (
	msgMagic0, msgMagic1 = 0xC1, 0x49
	msgVersion           = 1
	msgKindKeys          = 1
	msgKindFlush         = 2
	msgHeaderLen         = 12

	// maxMessageBytes is the size past which a batch is split into several
	// messages. A message holding a single key may be larger.
	maxMessageBytes = 64 << 10
)

// Errors of decodeMessage. errMalformed marks a message to count and
// ignore; errNewerVersion one that this version cannot read, and that may
// carry invalidations.
var (
	errMalformed    = errors.New("redisstore: malformed invalidation message")
	errNewerVersion = errors.New("redisstore: invalidation message of a newer format version")
)

// pendingKey is one key waiting to be published, with the subscription that
// announced it.
type pendingKey struct {
	sub uint64
	key string
}

// keyGroup is the keys one subscription announced, as a message carries
// them.
type keyGroup struct {
	sub  uint64
	keys []string
}

// message is a decoded invalidation message.
type message struct {
	origin uint64 // the sending Invalidator's id
	flush  bool   // every key may have changed
	groups []keyGroup
}

// keys returns every key of m, in order.
func (m *message) keys() []string {
	if len(m.groups) == 1 {
		return m.groups[0].keys
	}
	var n int
	for _, g := range m.groups {
		n += len(g.keys)
	}
	keys := make([]string, 0, n)
	for _, g := range m.groups {
		keys = append(keys, g.keys...)
	}
	return keys
}

// outMessage is one encoded message of a batch: payload carries n keys.
type outMessage struct {
	payload []byte
	n       int
}

// encodeFlush returns the flush message of the Invalidator origin.
func encodeFlush(origin uint64) []byte {
	return appendMsgHeader(make([]byte, 0, msgHeaderLen), origin, msgKindFlush)
}

// encodeKeys encodes keys (deduplicated by the caller) into messages of at
// most maxMessageBytes each, save for a message holding one larger key. It
// sorts keys by subscription, so that each subscription's keys make one
// group; the messages carry the keys in that order.
func encodeKeys(origin uint64, keys []pendingKey) []outMessage {
	slices.SortStableFunc(keys, func(a, b pendingKey) int { return cmp.Compare(a.sub, b.sub) })
	// A group's count is written before its keys: reserve the most it can
	// take.
	countLen := uvarintLen(uint64(len(keys)))
	var out []outMessage
	for start := 0; start < len(keys); {
		size, end := msgHeaderLen, start
		for ; end < len(keys); end++ {
			k := keys[end]
			add := uvarintLen(uint64(len(k.key))) + len(k.key)
			if end == start || k.sub != keys[end-1].sub {
				add += uvarintLen(k.sub) + countLen
			}
			if end > start && size+add > maxMessageBytes {
				break
			}
			size += add
		}
		out = append(out, outMessage{payload: encodeGroups(origin, keys[start:end], size), n: end - start})
		start = end
	}
	return out
}

// encodeGroups encodes one message of keys, sorted by subscription; size is
// the capacity to allocate.
func encodeGroups(origin uint64, keys []pendingKey, size int) []byte {
	b := appendMsgHeader(make([]byte, 0, size), origin, msgKindKeys)
	for start := 0; start < len(keys); {
		end := start + 1
		for end < len(keys) && keys[end].sub == keys[start].sub {
			end++
		}
		b = binary.AppendUvarint(b, keys[start].sub)
		b = binary.AppendUvarint(b, uint64(end-start))
		for _, k := range keys[start:end] {
			b = binary.AppendUvarint(b, uint64(len(k.key)))
			b = append(b, k.key...)
		}
		start = end
	}
	return b
}

func appendMsgHeader(b []byte, origin uint64, kind byte) []byte {
	b = append(b, msgMagic0, msgMagic1, msgVersion, kind)
	return binary.BigEndian.AppendUint64(b, origin)
}

// decodeMessage reads a message from the channel. Anything that is not a
// message of this format, version 1, exactly (foreign, truncated, trailing
// bytes, an unknown kind, a group without keys) is errMalformed; a message
// of a later version is errNewerVersion. The keys share p's memory. It never
// allocates more than p's length warrants, whatever the counts say.
func decodeMessage(p string) (message, error) {
	var m message
	if len(p) < 3 || p[0] != msgMagic0 || p[1] != msgMagic1 {
		return m, errMalformed
	}
	switch {
	case p[2] > msgVersion:
		return m, errNewerVersion
	case p[2] != msgVersion || len(p) < msgHeaderLen:
		return m, errMalformed
	}
	for _, c := range []byte(p[4:msgHeaderLen]) {
		m.origin = m.origin<<8 | uint64(c)
	}
	rest := p[msgHeaderLen:]
	switch p[3] {
	case msgKindFlush:
		if rest != "" {
			return message{}, errMalformed
		}
		m.flush = true
		return m, nil
	case msgKindKeys:
	default:
		return message{}, errMalformed
	}
	if rest == "" {
		return message{}, errMalformed
	}
	for rest != "" {
		sub, ok := readUvarint(&rest)
		if !ok {
			return message{}, errMalformed
		}
		n, ok := readUvarint(&rest)
		// Every key takes at least its length's byte.
		if !ok || n == 0 || n > uint64(len(rest)) {
			return message{}, errMalformed
		}
		g := keyGroup{sub: sub, keys: make([]string, 0, n)}
		for range n {
			l, ok := readUvarint(&rest)
			if !ok || l > uint64(len(rest)) {
				return message{}, errMalformed
			}
			g.keys = append(g.keys, rest[:l])
			rest = rest[l:]
		}
		m.groups = append(m.groups, g)
	}
	return m, nil
}

// readUvarint reads a uvarint from the front of *s, in its shortest form
// only, so that every message has one encoding.
func readUvarint(s *string) (uint64, bool) {
	var x uint64
	for i := 0; i < binary.MaxVarintLen64 && i < len(*s); i++ {
		c := (*s)[i]
		if i == binary.MaxVarintLen64-1 && c > 1 {
			return 0, false // overflows 64 bits
		}
		x |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			if c == 0 && i > 0 {
				return 0, false // a longer form than needed
			}
			*s = (*s)[i+1:]
			return x, true
		}
	}
	return 0, false
}

// uvarintLen is the length of x as a uvarint.
func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}
