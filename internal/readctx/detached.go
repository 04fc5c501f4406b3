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
	return &Pair{life: life, values: values}
}

// Pair is the context Detached returns, as a value: a struct that holds
// one and hands out its address, once Set, costs no allocation for it.
type Pair struct {
	life   context.Context
	values context.Context
}

// Set makes d the context Detached(values, life) returns.
func (d *Pair) Set(values, life context.Context) {
	d.life, d.values = life, values
}

func (d *Pair) Deadline() (time.Time, bool) { return d.life.Deadline() }
func (d *Pair) Done() <-chan struct{}       { return d.life.Done() }
func (d *Pair) Err() error                  { return d.life.Err() }

// Value takes the context package's own cancellation key from life, so that
// contexts derived from d hook onto life's cancellation directly, and every
// other key from values.
func (d *Pair) Value(key any) any {
	if key == cancelCtxKey {
		return d.life.Value(key)
	}
	return d.values.Value(key)
}
