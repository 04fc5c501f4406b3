package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("bench: ")
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	var (
		out             = flag.String("out", "../docs/bench", "directory of results.md and throughput.svg")
		rounds          = flag.Int("rounds", 3, "runs of each workload on each library; the figures are their medians")
		scale           = flag.Float64("scale", 1, "multiplies the calls of workloads a, b and d and the pages of e")
		only            = flag.String("workloads", "", "comma-separated workload ids to run (a-cold,a-warm,b,c,d,e); empty: all")
		profileDir      = flag.String("profile", "", "directory to write CPU and heap profiles and an execution trace of each measured phase of the first round into (profiling perturbs that round's figures)")
		withExperiments = flag.Bool("experiments", true, "also run the experiments: AutoPipeline on workloads b and d, msgpack as the Codec on a-warm and b")
	)
	flag.Parse()
	ctx := context.Background()
	start := time.Now()

	addr := os.Getenv("REDIS_ADDR")
	external := addr != ""
	if !external {
		srv, err := startRedisServer()
		if err != nil {
			return err
		}
		defer srv.Stop()
		addr = srv.Addr
	} else {
		log.Printf("using the Redis at REDIS_ADDR=%s; databases %d to %d will be flushed", addr, dbFirst, dbLast)
	}
	sz := fullSizes().scaled(*scale)
	proxy, err := startSlowProxy(addr, sz.RedisDelay)
	if err != nil {
		return err
	}
	defer proxy.Close()
	if *profileDir != "" {
		if err := os.MkdirAll(*profileDir, 0o755); err != nil {
			return err
		}
	}

	b := newBench(addr, proxy.Addr, sz, *profileDir, log.Printf)
	defer b.Close()
	wls, err := selectWorkloads(*only)
	if err != nil {
		return err
	}
	kinds := libraries()
	if *withExperiments {
		kinds = append(kinds, experiments()...)
	}
	results, err := b.runAll(ctx, wls, kinds, *rounds)
	if err != nil {
		return err
	}
	env := describeEnvironment(ctx, b, *rounds, external, time.Since(start))
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	md := renderResults(env, results)
	if err := os.WriteFile(filepath.Join(*out, "results.md"), []byte(md), 0o644); err != nil {
		return err
	}
	svg := renderChart(env, results)
	if err := os.WriteFile(filepath.Join(*out, "throughput.svg"), []byte(svg), 0o644); err != nil {
		return err
	}
	log.Printf("wrote %s and %s in %v", filepath.Join(*out, "results.md"), filepath.Join(*out, "throughput.svg"), time.Since(start).Round(time.Second))
	return nil
}

// selectWorkloads returns the workloads whose ids are listed in only, or
// all of them.
func selectWorkloads(only string) ([]workload, error) {
	all := workloads()
	if only == "" {
		return all, nil
	}
	var wls []workload
	for id := range strings.SplitSeq(only, ",") {
		found := false
		for _, w := range all {
			if w.ID == strings.TrimSpace(id) {
				wls = append(wls, w)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("bench: no workload %q", id)
		}
	}
	return wls, nil
}
