package quickstart_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/otterstore"
	"github.com/tiercache/tiercache/redisstore"
)

type User struct {
	ID   int
	Name string
}

// loadUser stands for the database: the slow origin behind the cache.
func loadUser(ctx context.Context, id int) (User, error) {
	if id != 42 {
		return User{}, tiercache.ErrNotFound
	}
	return User{ID: 42, Name: "Ada Lovelace"}, nil
}

func Example() {
	ctx := context.Background()
	redisServer, err := miniredis.Run() // any Redis will do; this one runs in the process
	if err != nil {
		panic(err)
	}
	defer redisServer.Close()

	client := redis.NewClient(&redis.Options{Addr: redisServer.Addr(), ContextTimeoutEnabled: true})
	defer client.Close()

	l1, err := otterstore.New(&otterstore.Options[User]{MaximumSize: 10_000})
	if err != nil {
		panic(err)
	}
	defer l1.Close()
	l2, err := redisstore.New(client, &redisstore.Options[User]{KeyPrefix: "users:"})
	if err != nil {
		panic(err)
	}
	cache, err := tiercache.New(l1, l2, &tiercache.Options[User]{
		DefaultTTL:  10 * time.Minute,
		StaleAfter:  time.Minute,            // refreshed in the background after a minute
		NegativeTTL: 30 * time.Second,       // "no such user" is remembered too
		L2Timeout:   50 * time.Millisecond,  // a slow Redis costs at most this
		Refill:      tiercache.RefillInline, // otter's Set is cheap: copy L2 hits into it before returning
	})
	if err != nil {
		panic(err)
	}
	defer cache.Close(ctx)

	for _, id := range []int{42, 42, 7} {
		user, err := cache.GetOrLoad(ctx, fmt.Sprint(id), func(ctx context.Context) (User, error) {
			return loadUser(ctx, id)
		})
		switch {
		case errors.Is(err, tiercache.ErrNotFound):
			fmt.Println(id, "not found")
		case err != nil:
			fmt.Println(id, "error:", err)
		default:
			fmt.Println(id, user.Name)
		}
	}
	fmt.Println("origin loads:", cache.Stats().Loads)
	// Output:
	// 42 Ada Lovelace
	// 42 Ada Lovelace
	// 7 not found
	// origin loads: 2
}
