package tiercacheotel

import (
	"maps"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/tiercache/tiercache"
)

// The attribute keys of the metrics and spans.
const (
	// CacheNameKey is the cache's tiercache.Options.Name; absent when the
	// name is empty.
	CacheNameKey = attribute.Key("tiercache.cache.name")
	// LayerKey is a layer: "l1" or "l2".
	LayerKey = attribute.Key("tiercache.layer")
	// StatusKey is an outcome: "hit", "miss" or "failed" for reads; "ok" or
	// "failed" for writes and announcements; "ok", "not_found" or "failed"
	// for loads.
	StatusKey = attribute.Key("tiercache.status")
	// OperationKey is the operation, tiercache.Op's name: "get",
	// "get_or_load", "set", "delete", "get_many", "get_or_load_many".
	OperationKey = attribute.Key("tiercache.operation")
	// OffloadKindKey is the kind of background work the Offload refused,
	// such as tiercache.OffloadKindRefill.
	OffloadKindKey = attribute.Key("tiercache.offload.kind")
	// InvalidationDirectionKey says whether invalidated keys were "sent" or
	// "received".
	InvalidationDirectionKey = attribute.Key("tiercache.invalidation.direction")
	// BreakerFromKey is the state a breaker transition left: "closed",
	// "open" or "half_open".
	BreakerFromKey = attribute.Key("tiercache.breaker.from")
	// BreakerToKey is the state a breaker transition entered.
	BreakerToKey = attribute.Key("tiercache.breaker.to")
	// KeysKey is how many keys a batch operation asked for, a load was
	// asked for or a refill copied (span attributes and events).
	KeysKey = attribute.Key("tiercache.keys")
	// WaitersKey is how many callers waited for a load (span events).
	WaitersKey = attribute.Key("tiercache.waiters")
	// DurationKey is a load's duration in seconds (span events).
	DurationKey = attribute.Key("tiercache.duration")
)

// status is an outcome, whose name (Outcome.String) is the value of
// StatusKey.
type status = tiercache.Outcome

const (
	statusHit      = tiercache.OutcomeHit
	statusMiss     = tiercache.OutcomeMiss
	statusFailed   = tiercache.OutcomeFailed
	statusOK       = tiercache.OutcomeOK
	statusNotFound = tiercache.OutcomeNotFound
	numStatuses    = tiercache.OutcomeUnknown // the outcomes recorded: every one before it
)

// layerNames are the values of LayerKey, indexed by tiercache.Layer; "" for
// NoLayer, whose attribute is left out.
var layerNames = [...]string{tiercache.NoLayer: "", tiercache.L1: "l1", tiercache.L2: "l2"}

const numLayers = len(layerNames)

// breakerNames are the values of the breaker keys, indexed by
// tiercache.BreakerState.
var breakerNames = [...]string{
	tiercache.BreakerClosed:   "closed",
	tiercache.BreakerOpen:     "open",
	tiercache.BreakerHalfOpen: "half_open",
}

const numBreakerStates = len(breakerNames)

// numOps is the number of operations whose attribute sets are built ahead
// of time, OpGet to OpGetOrLoadMany; another gets its set built per event.
const numOps = int(tiercache.OpGetOrLoadMany) + 1

// offloadKinds are the kinds of background work whose attribute sets are
// built ahead of time; another kind gets its set built per event.
var offloadKinds = [...]string{
	tiercache.OffloadKindRefill, tiercache.OffloadKindRefresh,
	tiercache.OffloadKindWriteL2, tiercache.OffloadKindRaceLoser,
}

// opts is one attribute set as the options of both kinds of measurement,
// built once so that recording allocates nothing.
type opts struct {
	add []metric.AddOption
	rec []metric.RecordOption
}

func newOpts(kvs ...attribute.KeyValue) opts {
	o := metric.WithAttributeSet(attribute.NewSet(kvs...))
	return opts{add: []metric.AddOption{o}, rec: []metric.RecordOption{o}}
}

// cacheSets are the attribute sets of one cache name, for each combination
// of the small fixed attributes.
type cacheSets struct {
	name      attribute.KeyValue // CacheNameKey, or an empty KeyValue for ""
	cache     opts               // the name alone
	read      [numLayers][numStatuses]opts
	layer     [numLayers]opts // abandoned reads, write failures
	op        [numOps][numStatuses][numLayers]opts
	load      [numStatuses]opts
	offload   [len(offloadKinds)]opts
	invSent   [numStatuses]opts
	invRecv   opts
	breaker   [numBreakerStates][numBreakerStates]opts
	spanAttrs []attribute.KeyValue // the name, for spans; empty for ""
}

// base returns the attributes every set of the cache begins with.
func (s *cacheSets) base(kvs ...attribute.KeyValue) []attribute.KeyValue {
	if s.name.Key == "" {
		return kvs
	}
	return append([]attribute.KeyValue{s.name}, kvs...)
}

func newCacheSets(name string) *cacheSets {
	s := &cacheSets{}
	if name != "" {
		s.name = CacheNameKey.String(name)
		s.spanAttrs = []attribute.KeyValue{s.name}
	}
	s.cache = newOpts(s.base()...)
	for l := tiercache.L1; int(l) < numLayers; l++ {
		layer := LayerKey.String(layerNames[l])
		s.layer[l] = newOpts(s.base(layer)...)
		for _, st := range []status{statusHit, statusMiss, statusFailed} {
			s.read[l][st] = newOpts(s.base(layer, StatusKey.String(st.String()))...)
		}
	}
	for op := range tiercache.Op(numOps) {
		opAttr := OperationKey.String(op.String())
		for st := range numStatuses {
			s.op[op][st][tiercache.NoLayer] = newOpts(s.base(opAttr, StatusKey.String(st.String()))...)
		}
		for l := tiercache.L1; int(l) < numLayers; l++ {
			s.op[op][statusHit][l] = newOpts(s.base(opAttr, StatusKey.String(statusHit.String()), LayerKey.String(layerNames[l]))...)
		}
	}
	for _, st := range []status{statusOK, statusNotFound, statusFailed} {
		s.load[st] = newOpts(s.base(StatusKey.String(st.String()))...)
	}
	for i, kind := range offloadKinds {
		s.offload[i] = newOpts(s.base(OffloadKindKey.String(kind))...)
	}
	for _, st := range []status{statusOK, statusFailed} {
		s.invSent[st] = newOpts(s.base(InvalidationDirectionKey.String("sent"), StatusKey.String(st.String()))...)
	}
	s.invRecv = newOpts(s.base(InvalidationDirectionKey.String("received"))...)
	for from := range numBreakerStates {
		for to := range numBreakerStates {
			s.breaker[from][to] = newOpts(s.base(BreakerFromKey.String(breakerNames[from]), BreakerToKey.String(breakerNames[to]))...)
		}
	}
	return s
}

// readOpts returns the set of a read of layer l with outcome st.
func (s *cacheSets) readOpts(l tiercache.Layer, st status) opts {
	if l != tiercache.NoLayer && int(l) < numLayers && st < numStatuses {
		return s.read[l][st]
	}
	return newOpts(s.base(LayerKey.String(layerName(l)), StatusKey.String(st.String()))...)
}

// layerOpts returns the set of layer l alone.
func (s *cacheSets) layerOpts(l tiercache.Layer) opts {
	if l != tiercache.NoLayer && int(l) < numLayers {
		return s.layer[l]
	}
	return newOpts(s.base(LayerKey.String(layerName(l)))...)
}

// opOpts returns the set of operation op with outcome st, served by l.
func (s *cacheSets) opOpts(op tiercache.Op, st status, l tiercache.Layer) opts {
	if st != statusHit {
		l = tiercache.NoLayer
	}
	if int(op) < numOps && st < numStatuses && int(l) < numLayers {
		return s.op[op][st][l]
	}
	kvs := s.base(OperationKey.String(op.String()), StatusKey.String(st.String()))
	if l != tiercache.NoLayer {
		kvs = append(kvs, LayerKey.String(layerName(l)))
	}
	return newOpts(kvs...)
}

// offloadOpts returns the set of a refused task of kind.
func (s *cacheSets) offloadOpts(kind string) opts {
	for i, k := range offloadKinds {
		if k == kind {
			return s.offload[i]
		}
	}
	return newOpts(s.base(OffloadKindKey.String(kind))...)
}

// breakerOpts returns the set of a transition from one state to another.
func (s *cacheSets) breakerOpts(from, to tiercache.BreakerState) opts {
	if int(from) < numBreakerStates && int(to) < numBreakerStates {
		return s.breaker[from][to]
	}
	return newOpts(s.base(BreakerFromKey.String(breakerName(from)), BreakerToKey.String(breakerName(to)))...)
}

func layerName(l tiercache.Layer) string {
	if int(l) < numLayers && l != tiercache.NoLayer {
		return layerNames[l]
	}
	return l.String()
}

func breakerName(s tiercache.BreakerState) string {
	if int(s) < numBreakerStates {
		return breakerNames[s]
	}
	return s.String()
}

// setsByName holds the cacheSets of every cache name seen, read without a
// lock or an allocation: the map is replaced, never written, when a name is
// added.
type setsByName struct {
	m  atomic.Pointer[map[string]*cacheSets]
	mu sync.Mutex // serialises additions
}

// get returns the sets of name, building them on its first event.
func (b *setsByName) get(name string) *cacheSets {
	if m := b.m.Load(); m != nil {
		if s := (*m)[name]; s != nil {
			return s
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.m.Load()
	if old != nil {
		if s := (*old)[name]; s != nil {
			return s
		}
	}
	m := make(map[string]*cacheSets, 1)
	if old != nil {
		maps.Copy(m, *old)
	}
	s := newCacheSets(name)
	m[name] = s
	b.m.Store(&m)
	return s
}
