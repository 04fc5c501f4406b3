package tiercache

import (
	"encoding/json"
	"fmt"
)

// Codec turns values into bytes and back, for a layer that stores bytes
// (Redis). Implementations must be safe for concurrent use. Unmarshal must
// return an error, never panic, on bytes it did not produce.
type Codec[T any] interface {
	Marshal(v T) ([]byte, error)
	Unmarshal(data []byte) (T, error)
}

// JSONCodec is the default Codec: encoding/json. The zero value is ready to
// use.
type JSONCodec[T any] struct{}

var _ Codec[int] = JSONCodec[int]{}

// Marshal encodes v as JSON.
func (JSONCodec[T]) Marshal(v T) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("tiercache: json codec: marshal: %w", err)
	}
	return b, nil
}

// Unmarshal decodes JSON into a T.
func (JSONCodec[T]) Unmarshal(data []byte) (T, error) {
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		var zero T
		return zero, fmt.Errorf("tiercache: json codec: unmarshal: %w", err)
	}
	return v, nil
}
