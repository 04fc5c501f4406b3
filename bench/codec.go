package main

import (
	"fmt"

	"github.com/tiercache/tiercache"
	"github.com/vmihailenco/msgpack/v5"
)

// msgpackCodec is a tiercache.Codec on msgpack (the encoding go-redis/cache
// uses by default), for the codec experiment: it shows what tiercache's
// default JSON costs on an L2 hit. Product carries msgpack tags.
type msgpackCodec[T any] struct{}

var _ tiercache.Codec[Product] = msgpackCodec[Product]{}

// Marshal encodes v as msgpack.
func (msgpackCodec[T]) Marshal(v T) ([]byte, error) {
	b, err := msgpack.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("bench: msgpack codec: marshal: %w", err)
	}
	return b, nil
}

// Unmarshal decodes msgpack into a T.
func (msgpackCodec[T]) Unmarshal(data []byte) (T, error) {
	var v T
	if err := msgpack.Unmarshal(data, &v); err != nil {
		var zero T
		return zero, fmt.Errorf("bench: msgpack codec: unmarshal: %w", err)
	}
	return v, nil
}
