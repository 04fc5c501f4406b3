package tiercache

import (
	"errors"
	"fmt"
	"runtime/debug"
)

// PanicError is the error a panic in user code becomes: a reader, a loader or
// a background task. It keeps the recovered value and the stack of the
// goroutine that panicked, and unwraps to the value when that is an error.
type PanicError struct {
	// Value is what recover returned.
	Value any
	// Stack is the stack of the panicking goroutine, as debug.Stack prints it.
	Stack []byte
}

// newPanicError must be called from the deferred function that recovered, so
// that the stack still shows where the panic happened.
func newPanicError(recovered any) *PanicError {
	return &PanicError{Value: recovered, Stack: debug.Stack()}
}

// Error returns the panic value and the stack.
func (e *PanicError) Error() string {
	return fmt.Sprintf("tiercache: recovered panic: %v\n\n%s", e.Value, e.Stack)
}

// Unwrap returns the panic value when it is an error, so that errors.Is and
// errors.As see through the panic.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// errNilReader is returned by every policy when a ReadFunc is nil.
var errNilReader = errors.New("tiercache: read policy: nil ReadFunc")

// layerError names the layer an error came from and wraps it.
type layerError struct {
	layer Layer
	err   error
}

func (e *layerError) Error() string { return e.layer.String() + ": " + e.err.Error() }
func (e *layerError) Unwrap() error { return e.err }

// readFailed builds the error of a read in which every layer that ran failed.
// errors.Is finds each layer's error in it.
func readFailed(key string, r1, r2 LayerReport) error {
	var errs []error
	if r1.Status == StatusFailed {
		errs = append(errs, &layerError{L1, r1.Err})
	}
	if r2.Status == StatusFailed {
		errs = append(errs, &layerError{L2, r2.Err})
	}
	return fmt.Errorf("tiercache: read %q: every layer failed: %w", key, errors.Join(errs...))
}

// readCanceled builds the error of a read whose context ended before an
// answer; errors.Is(err, ctx.Err()) holds.
func readCanceled(key string, ctxErr error) error {
	return fmt.Errorf("tiercache: read %q: %w", key, ctxErr)
}

// ErrNotFound says that the thing a key names does not exist. A loader
// returns it (or an error wrapping it) for "no such thing"; GetOrLoad then
// returns an error for which errors.Is(err, ErrNotFound) holds and, with
// Options.NegativeTTL, remembers the absence in both layers.
var ErrNotFound = errors.New("tiercache: not found")

// ErrBadEntry is wrapped by a Backend's error about an entry it holds but
// cannot use: corrupt, foreign, of an unknown format, too large. The layer
// itself is healthy, so the L2 circuit breaker does not count such an
// error; the read is still that layer's failure, and the cache carries on
// as on a miss.
var ErrBadEntry = errors.New("tiercache: bad entry")

// ErrClosed is returned by every call on a Cache after Close.
var ErrClosed = errors.New("tiercache: cache closed")

// errEmptyKey is returned for the empty key, which is almost always a
// missing identifier rather than a key anyone means.
var errEmptyKey = errors.New("tiercache: empty key")

// loadError carries a loader's outcome, as seen by a caller that joined
// someone else's load through the L2 read of a policy, so that GetOrLoad
// returns it rather than loading again.
type loadError struct{ err error }

func (e *loadError) Error() string { return e.err.Error() }
func (e *loadError) Unwrap() error { return e.err }

// contained calls call, turning a panic into a *PanicError: for the calls
// of user code whose panic is that call's failure.
func contained(call func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = newPanicError(p)
		}
	}()
	return call()
}
