package tiercacheprom

import (
	"context"
	"fmt"
	"maps"
	"math"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tiercache/tiercache"
)

// DefaultBuckets are the upper bounds, in seconds, of the Observer's
// histogram buckets when ObserverOptions.Buckets is nil: from 10µs to 1s.
// An L1 hit falls in the first; L2 round trips, loads and their tails
// spread over the rest.
var DefaultBuckets = []float64{
	0.00001, 0.000025, 0.00005,
	0.0001, 0.00025, 0.0005,
	0.001, 0.0025, 0.005,
	0.01, 0.025, 0.05,
	0.1, 0.25, 0.5,
	1,
}

// ObserverOptions configures an Observer. The zero value is valid.
type ObserverOptions struct {
	// Buckets are the upper bounds, in seconds, of the histograms' buckets,
	// in increasing order. Nil or empty: DefaultBuckets.
	Buckets []float64
}

// validate checks o and returns the first problem found.
func (o *ObserverOptions) validate() error {
	for i, b := range o.Buckets {
		if math.IsNaN(b) || i > 0 && b <= o.Buckets[i-1] {
			return fmt.Errorf("tiercacheprom: ObserverOptions.Buckets must increase, got %v", o.Buckets)
		}
	}
	return nil
}

// Observer is a tiercache.Observer that records the latency of a cache's
// operations, layer reads and loads in Prometheus histograms. Give it to the
// cache in tiercache.Options.Observer and register it: it is a
// prometheus.Collector. One Observer may serve several caches, told apart
// by their tiercache.Options.Name in the cache label; a registry holds one
// Observer, since two would expose the same series. It is safe for
// concurrent use.
//
// The histograms are:
//
//	tiercache_operation_duration_seconds{cache,operation,status,layer}
//	tiercache_layer_read_duration_seconds{cache,layer,status}
//	tiercache_load_duration_seconds{cache,status}
//
// operation is get, get_or_load, set, delete, get_many or get_or_load_many;
// status is hit, miss or failed for reads (a loaded value and ErrNotFound
// are misses), ok or failed for set and delete, ok, not_found or failed for
// loads; layer is l1 or l2, and on an operation the layer that served a hit
// ("" otherwise). Reads a policy abandoned have no duration and are not
// recorded (tiercache_layer_reads_total counts them). A series appears on
// its first observation.
//
// Recording an event is a map look-up and a histogram update, without
// allocation: the series of each cache are resolved once.
type Observer struct {
	ops, reads, loads *prometheus.HistogramVec
	caches            atomic.Pointer[map[string]*cacheSeries]
	mu                sync.Mutex // serialises additions to caches
}

var (
	_ tiercache.Observer   = (*Observer)(nil)
	_ prometheus.Collector = (*Observer)(nil)
)

// NewObserver returns an Observer configured by opts; nil opts means the
// defaults. It validates opts, returning an error prefixed "tiercacheprom:",
// and never modifies *opts.
func NewObserver(opts *ObserverOptions) (*Observer, error) {
	var o ObserverOptions
	if opts != nil {
		o = *opts
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	buckets := o.Buckets
	if len(buckets) == 0 {
		buckets = DefaultBuckets
	}
	buckets = append([]float64(nil), buckets...) // neither the caller nor DefaultBuckets can change them later
	hist := func(name, help string, labels ...string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	}
	return &Observer{
		ops: hist("tiercache_operation_duration_seconds",
			"Duration of the cache's operations.", "cache", "operation", "status", "layer"),
		reads: hist("tiercache_layer_read_duration_seconds",
			"Duration of the reads of each cache layer.", "cache", "layer", "status"),
		loads: hist("tiercache_load_duration_seconds",
			"Duration of the loader calls.", "cache", "status"),
	}, nil
}

// Observe records e. It is called by the Cache.
func (o *Observer) Observe(_ context.Context, e tiercache.Event) {
	switch e.Kind {
	case tiercache.EventRead:
		st := e.Outcome()
		if st == statusUnknown {
			return // abandoned: no duration
		}
		o.series(e.Cache).read(o, e.Layer, st).Observe(e.Duration.Seconds())
	case tiercache.EventOpDone:
		st := e.Outcome()
		o.series(e.Cache).op(o, e.Op, st, e.Layer).Observe(e.Duration.Seconds())
	case tiercache.EventLoad:
		o.series(e.Cache).load(o, e.Outcome()).Observe(e.Duration.Seconds())
	}
}

// Describe sends the histograms' descriptors.
func (o *Observer) Describe(ch chan<- *prometheus.Desc) {
	o.ops.Describe(ch)
	o.reads.Describe(ch)
	o.loads.Describe(ch)
}

// Collect sends the histograms.
func (o *Observer) Collect(ch chan<- prometheus.Metric) {
	o.ops.Collect(ch)
	o.reads.Collect(ch)
	o.loads.Collect(ch)
}

// series returns the series of the cache named name, made on its first
// event; bytes of name that are not UTF-8 read U+FFFD in the cache label. The map is replaced, never written, so that it is read without a
// lock.
func (o *Observer) series(name string) *cacheSeries {
	if m := o.caches.Load(); m != nil {
		if s := (*m)[name]; s != nil {
			return s
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	old := o.caches.Load()
	if old != nil {
		if s := (*old)[name]; s != nil {
			return s
		}
	}
	m := make(map[string]*cacheSeries, 1)
	if old != nil {
		maps.Copy(m, *old)
	}
	// A label value must be valid UTF-8, or the vector panics.
	s := &cacheSeries{name: strings.ToValidUTF8(name, "\uFFFD")}
	m[name] = s
	o.caches.Store(&m)
	return s
}

// status is an outcome, the value of the status label.
type status = tiercache.Outcome

// statusUnknown bounds the outcomes recorded: every one before it.
const statusUnknown = tiercache.OutcomeUnknown

// layerNames are the values of the layer label, indexed by tiercache.Layer.
var layerNames = [...]string{tiercache.NoLayer: "", tiercache.L1: "l1", tiercache.L2: "l2"}

const (
	numLayers = len(layerNames)
	numOps    = int(tiercache.OpGetOrLoadMany) + 1
)

// cacheSeries are the histogram series of one cache, each resolved from
// its vector on first use.
type cacheSeries struct {
	name  string
	ops   [numOps][statusUnknown][numLayers]lazySeries
	reads [numLayers][statusUnknown]lazySeries
	loads [statusUnknown]lazySeries
}

// lazySeries is one series, looked up in its vector once.
type lazySeries struct {
	once sync.Once
	obs  prometheus.Observer
}

func (l *lazySeries) get(vec *prometheus.HistogramVec, labels ...string) prometheus.Observer {
	l.once.Do(func() { l.obs = vec.WithLabelValues(labels...) })
	return l.obs
}

func (s *cacheSeries) read(o *Observer, l tiercache.Layer, st status) prometheus.Observer {
	if l == tiercache.NoLayer || int(l) >= numLayers {
		return o.reads.WithLabelValues(s.name, l.String(), st.String())
	}
	return s.reads[l][st].get(o.reads, s.name, layerNames[l], st.String())
}

func (s *cacheSeries) op(o *Observer, op tiercache.Op, st status, l tiercache.Layer) prometheus.Observer {
	if st != tiercache.OutcomeHit || int(l) >= numLayers {
		l = tiercache.NoLayer
	}
	if int(op) >= numOps {
		return o.ops.WithLabelValues(s.name, op.String(), st.String(), layerNames[l])
	}
	return s.ops[op][st][l].get(o.ops, s.name, op.String(), st.String(), layerNames[l])
}

func (s *cacheSeries) load(o *Observer, st status) prometheus.Observer {
	return s.loads[st].get(o.loads, s.name, st.String())
}
