package tiercache

import (
	"context"
	"strconv"
	"time"
)

// ReadFunc reads one key from one layer. It returns (nil, nil) on a miss.
//
// A ReadFunc must honour ctx: policies cancel reads they no longer need
// through it, and a policy that runs the reader on the calling goroutine can
// only return as early as the reader does. A result with both a value and an
// error counts as a failure.
type ReadFunc[T any] func(ctx context.Context, key string) (*CacheValue[T], error)

// ReadPolicy decides how the two layers are read for one key.
//
// Read returns the chosen value in ReadResult.Value (nil on a miss) and what
// each layer did. It returns a non-nil error only when no value was found and
// every layer that ran failed (the error then wraps each layer's error), or
// when ctx ended before an answer (errors.Is(err, ctx.Err()) holds). A miss in
// one layer and a failure in the other is a miss with a nil error; the
// failure shows in the layer's report. A value that has expired is a miss.
//
// off receives background work a policy may hand off, such as a losing read
// left to finish; it may be nil.
type ReadPolicy[T any] interface {
	Read(ctx context.Context, key string, l1, l2 ReadFunc[T], off Offload) (ReadResult[T], error)
}

// ReadPolicyFunc adapts a function to the ReadPolicy interface.
type ReadPolicyFunc[T any] func(ctx context.Context, key string, l1, l2 ReadFunc[T], off Offload) (ReadResult[T], error)

// Read calls f.
func (f ReadPolicyFunc[T]) Read(ctx context.Context, key string, l1, l2 ReadFunc[T], off Offload) (ReadResult[T], error) {
	return f(ctx, key, l1, l2, off)
}

var (
	_ ReadPolicy[int] = ReadPolicyFunc[int](nil)
	_ ReadPolicy[int] = SequentialReadPolicy[int]{}
	_ ReadPolicy[int] = ParallelReadPolicy[int]{}
	_ ReadPolicy[int] = RaceReadPolicy[int]{}
)

// Layer names a cache layer.
type Layer uint8

const (
	// NoLayer is the source of a miss.
	NoLayer Layer = iota
	// L1 is the fast, in-process layer.
	L1
	// L2 is the shared, remote layer.
	L2
)

// String returns "L1", "L2" or "none".
func (l Layer) String() string {
	switch l {
	case NoLayer:
		return "none"
	case L1:
		return "L1"
	case L2:
		return "L2"
	}
	return "Layer(" + strconv.Itoa(int(l)) + ")"
}

// ReadStatus is what one layer's read came to.
type ReadStatus uint8

const (
	// StatusNotRun: the layer was not read.
	StatusNotRun ReadStatus = iota
	// StatusHit: the layer returned an unexpired value.
	StatusHit
	// StatusMiss: the layer had no value, or only an expired one.
	StatusMiss
	// StatusFailed: the reader returned an error or panicked.
	StatusFailed
	// StatusAbandoned: the read was still running when the policy answered
	// (it lost a race, or the caller's context ended); its result is not used.
	StatusAbandoned
)

// String returns "not-run", "hit", "miss", "failed" or "abandoned".
func (s ReadStatus) String() string {
	switch s {
	case StatusNotRun:
		return "not-run"
	case StatusHit:
		return "hit"
	case StatusMiss:
		return "miss"
	case StatusFailed:
		return "failed"
	case StatusAbandoned:
		return "abandoned"
	}
	return "ReadStatus(" + strconv.Itoa(int(s)) + ")"
}

// LayerReport is what one layer did during a read.
type LayerReport struct {
	// Status is the outcome of the layer's read.
	Status ReadStatus
	// Err is the reader's error when Status is StatusFailed (a *PanicError
	// when the reader panicked); nil otherwise.
	Err error
	// Latency is how long the reader ran; zero when it did not run or was
	// abandoned.
	Latency time.Duration
}

// ReadResult is the outcome of a ReadPolicy.
type ReadResult[T any] struct {
	// Value is the chosen value; nil on a miss. It is never expired.
	Value *CacheValue[T]
	// Source is the layer that supplied Value; NoLayer on a miss.
	Source Layer
	// L1 and L2 report what each layer did.
	L1, L2 LayerReport
}

// report returns the report of layer l.
func (r *ReadResult[T]) report(l Layer) *LayerReport {
	if l == L1 {
		return &r.L1
	}
	return &r.L2
}

// readLayer runs one reader and classifies its outcome. A panic becomes a
// failure carrying a *PanicError; an expired value becomes a miss. It reads
// the clock twice: before the call, and after it for both the latency and the
// expiry check.
func readLayer[T any](ctx context.Context, key string, read ReadFunc[T]) (v *CacheValue[T], rep LayerReport) {
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			v = nil
			rep = LayerReport{Status: StatusFailed, Err: newPanicError(p), Latency: time.Since(start)}
		}
	}()
	v, err := read(ctx, key)
	now := time.Now()
	rep.Latency = now.Sub(start)
	switch {
	case err != nil:
		v = nil
		rep.Status, rep.Err = StatusFailed, err
	case v == nil || v.Expired(now):
		v = nil
		rep.Status = StatusMiss
	default:
		rep.Status = StatusHit
	}
	return v, rep
}

// goexitReport is the report of a reader that called runtime.Goexit on a
// goroutine a policy started: the goroutine ends, the read counts as failed.
var goexitReport = LayerReport{Status: StatusFailed, Err: errGoexit}

// missOrFailure returns the error of a read that found no value: nil when a
// layer missed, the joined failures when every layer that ran failed.
func missOrFailure[T any](key string, res *ReadResult[T]) error {
	if res.L1.Status == StatusMiss || res.L2.Status == StatusMiss {
		return nil
	}
	if res.L1.Status == StatusFailed || res.L2.Status == StatusFailed {
		return readFailed(key, res.L1, res.L2)
	}
	return nil
}

// checkRead validates the arguments every policy shares.
func checkRead[T any](ctx context.Context, key string, l1, l2 ReadFunc[T]) error {
	if l1 == nil || l2 == nil {
		return errNilReader
	}
	if err := ctx.Err(); err != nil {
		return readCanceled(key, err)
	}
	return nil
}
