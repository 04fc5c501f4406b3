package tiercache_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/tiercache/tiercache"
)

func ExampleOffloadPool() {
	pool := tiercache.NewOffloadPool(tiercache.OffloadOptions{
		MaxConcurrent: 2,
		MaxQueued:     8,
		TaskTimeout:   time.Second,
	})

	var refreshed atomic.Int64
	for range 5 {
		ok := pool.Go("refresh", func(ctx context.Context) {
			// Background work gets its own ctx, bounded by TaskTimeout.
			refreshed.Add(1)
		})
		fmt.Println("accepted:", ok)
	}

	// Close waits for the running and queued tasks, then refuses new ones.
	if err := pool.Close(context.Background()); err != nil {
		fmt.Println("close:", err)
	}
	fmt.Println("after close, accepted:", pool.Go("refresh", func(context.Context) {}))

	s := pool.Stats()
	fmt.Printf("refreshed=%d accepted=%d completed=%d rejected=%d\n",
		refreshed.Load(), s.Accepted, s.Completed, s.Rejected)
	// Output:
	// accepted: true
	// accepted: true
	// accepted: true
	// accepted: true
	// accepted: true
	// after close, accepted: false
	// refreshed=5 accepted=5 completed=5 rejected=1
}
