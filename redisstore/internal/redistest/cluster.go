package redistest

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// clusterTimeout bounds how long RunCluster waits for cluster_state:ok.
const clusterTimeout = 30 * time.Second

// Cluster is a Redis Cluster of redis-server processes on loopback, every
// node a master holding a share of the slots, without replicas.
type Cluster struct {
	// Nodes are the cluster's servers; a test may freeze one.
	Nodes []*Server
}

// RunCluster starts n (at least 3) redis-server processes with
// --cluster-enabled yes on free loopback ports whose bus ports
// (port+10000) are free too, joins them with
//
//	redis-cli --cluster create 127.0.0.1:p1 ... --cluster-yes
//
// (no replicas) and returns once every node reports cluster_state:ok. The
// caller must Stop it.
func RunCluster(n int) (*Cluster, error) {
	if n < 3 {
		return nil, fmt.Errorf("a Redis Cluster needs at least 3 masters, not %d", n)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, fmt.Errorf("redis-cli not in PATH: %s", installHint)
	}
	c := &Cluster{}
	for range n {
		s, err := startServer(true, []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf", // in the server's own dir
			"--cluster-node-timeout", "5000",
		})
		if err != nil {
			return nil, errors.Join(fmt.Errorf("starting a cluster node: %w", err), c.Stop())
		}
		c.Nodes = append(c.Nodes, s)
	}
	args := append(append([]string{"--cluster", "create"}, c.Addrs()...), "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		return nil, errors.Join(fmt.Errorf("redis-cli --cluster create: %w: %s", err, tail(out)), c.Stop())
	}
	deadline := time.Now().Add(clusterTimeout)
	for _, s := range c.Nodes {
		for {
			info, err := s.Do("CLUSTER", "INFO")
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				return nil, errors.Join(fmt.Errorf("node %s not in cluster_state:ok within %v (%v): %s", s.Addr, clusterTimeout, err, info), c.Stop())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c, nil
}

// Addrs returns the addresses of the nodes.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		addrs[i] = s.Addr
	}
	return addrs
}

// Stop stops every node; the errors are joined.
func (c *Cluster) Stop() error {
	var errs []error
	for _, s := range c.Nodes {
		errs = append(errs, s.Stop())
	}
	return errors.Join(errs...)
}

func tail(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 800 {
		s = s[len(s)-800:]
	}
	return s
}
