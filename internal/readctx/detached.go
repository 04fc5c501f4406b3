package readctx

import (
	"context"
	"time"
)

// Detached returns a context with the values of values and the deadline,
// cancellation and error of life. Background work started on behalf of a
// request uses it: it keeps the request's trace values while living by the
// background task's own lifetime.
func Detached(values, life context.Context) context.Context {
	return &detached{life: life, values: values}
}

type detached struct {
	life   context.Context
	values context.Context
}

func (d *detached) Deadline() (time.Time, bool) { return d.life.Deadline() }
func (d *detached) Done() <-chan struct{}       { return d.life.Done() }
func (d *detached) Err() error                  { return d.life.Err() }

// Value takes the context package's own cancellation key from life, so that
// contexts derived from d hook onto life's cancellation directly, and every
// other key from values.
func (d *detached) Value(key any) any {
	if key == cancelCtxKey {
		return d.life.Value(key)
	}
	return d.values.Value(key)
}
