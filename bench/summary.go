package main

import (
	"slices"
	"time"
)

// summary is a result's figures: the medians of its rounds, and the
// extremes where a single round matters.
type summary struct {
	Kind       libraryKind
	Rounds     int
	Ops        int     // calls measured (pages in a batch workload), median
	Throughput float64 // median ops/s (pages/s in a batch workload)
	KeysPerSec float64 // median keys read per second
	TputMin    float64
	TputMax    float64
	P50        time.Duration
	P99        time.Duration
	P999       time.Duration
	ClientCPU  time.Duration // the process's CPU time per call, median
	RedisCPU   time.Duration // redis-server's CPU time per call, median
	Allocs     float64       // per call
	Bytes      float64       // per call
	Loads      int64         // origin calls, median
	LoadsMin   int64
	LoadsMax   int64
	OriginKeys int64 // keys the origin calls asked for, median
	MaxPerKey  int   // stampede: the most loads of one key, over every round
	KeysLoaded int   // stampede: the fewest keys loaded, over every round
	PageLoads  int64 // batch: the most origin calls of one page, over every round
	Commands   float64
	Gets       float64 // GET and MGET per call
	MGets      float64 // MGET per call
	GetsOnly   float64 // GET per call
	Sets       float64 // SET per call
	Errors     int64   // over every round
	FirstError string
	Diag       map[string]float64 // per call, medians
}

func summarize(r *result) summary {
	ss := r.Samples
	s := summary{
		Kind:       r.Kind,
		Rounds:     len(ss),
		Ops:        median(ss, func(s sample) int { return s.Ops }),
		Throughput: median(ss, sample.Throughput),
		P50:        median(ss, func(s sample) time.Duration { return s.P50 }),
		P99:        median(ss, func(s sample) time.Duration { return s.P99 }),
		P999:       median(ss, func(s sample) time.Duration { return s.P999 }),
		ClientCPU:  median(ss, sample.ClientCPUPerOp),
		RedisCPU:   median(ss, sample.RedisCPUPerOp),
		Allocs:     median(ss, func(s sample) float64 { return float64(s.Allocs) / float64(s.Ops) }),
		Bytes:      median(ss, func(s sample) float64 { return float64(s.Bytes) / float64(s.Ops) }),
		KeysPerSec: median(ss, sample.KeysPerSecond),
		Loads:      median(ss, func(s sample) int64 { return s.Loads }),
		OriginKeys: median(ss, func(s sample) int64 { return s.LoadedKeys }),
		Commands:   median(ss, sample.CommandsPerOp),
		Gets:       median(ss, func(s sample) float64 { return float64(s.Gets()) / float64(s.Ops) }),
		MGets:      median(ss, func(s sample) float64 { return s.CommandPerOp("mget") }),
		GetsOnly:   median(ss, func(s sample) float64 { return s.CommandPerOp("get") }),
		Sets:       median(ss, func(s sample) float64 { return s.CommandPerOp("set") }),
		LoadsMin:   -1,
		TputMin:    -1,
	}
	for _, x := range ss {
		t := x.Throughput()
		if s.TputMin < 0 || t < s.TputMin {
			s.TputMin = t
		}
		s.TputMax = max(s.TputMax, t)
		if s.LoadsMin < 0 || x.Loads < s.LoadsMin {
			s.LoadsMin = x.Loads
		}
		s.LoadsMax = max(s.LoadsMax, x.Loads)
		s.MaxPerKey = max(s.MaxPerKey, x.MaxPerKey)
		s.PageLoads = max(s.PageLoads, x.PageLoads)
		if s.KeysLoaded == 0 || x.KeysLoaded < s.KeysLoaded {
			s.KeysLoaded = x.KeysLoaded
		}
		s.Errors += x.Errors
		if s.FirstError == "" {
			s.FirstError = x.FirstError
		}
	}
	if len(ss) > 0 && ss[0].Diag != nil {
		s.Diag = make(map[string]float64)
		for name := range ss[0].Diag {
			s.Diag[name] = median(ss, func(x sample) float64 { return float64(x.Diag[name]) / float64(x.Ops) })
		}
	}
	return s
}

// summaries summarizes the results of one workload.
func summaries(rs []*result) []summary {
	out := make([]summary, len(rs))
	for i, r := range rs {
		out[i] = summarize(r)
	}
	return out
}

// find returns the summary of the library named name, if any.
func find(ss []summary, name string) (summary, bool) {
	i := slices.IndexFunc(ss, func(s summary) bool { return s.Kind.Name == name })
	if i < 0 {
		return summary{}, false
	}
	return ss[i], true
}

// bestPeer returns the peer with the highest median throughput.
func bestPeer(ss []summary) (summary, bool) {
	var best summary
	found := false
	for _, s := range ss {
		if s.Kind.Peer && (!found || s.Throughput > best.Throughput) {
			best, found = s, true
		}
	}
	return best, found
}

// peers returns the peers' summaries.
func peers(ss []summary) []summary {
	var out []summary
	for _, s := range ss {
		if s.Kind.Peer {
			out = append(out, s)
		}
	}
	return out
}

// tiercaches returns the summaries of tiercache's policies, experiments
// aside.
func tiercaches(ss []summary) []summary {
	var out []summary
	for _, s := range ss {
		if s.Kind.Family == familyTiercache && !s.Kind.Experiment {
			out = append(out, s)
		}
	}
	return out
}
