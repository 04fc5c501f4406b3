module github.com/tiercache/tiercache/examples

go 1.26.0

require (
	github.com/alicebob/miniredis/v2 v2.40.0
	github.com/redis/go-redis/v9 v9.23.0
	github.com/tiercache/tiercache v0.0.0
	github.com/tiercache/tiercache/otterstore v0.0.0
	github.com/tiercache/tiercache/redisstore v0.0.0
	go.uber.org/goleak v1.3.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/maypok86/otter/v2 v2.4.0 // indirect
	github.com/yuin/gopher-lua v1.1.1 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	golang.org/x/sync v0.22.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
)

replace (
	github.com/tiercache/tiercache => ../
	github.com/tiercache/tiercache/otterstore => ../otterstore
	github.com/tiercache/tiercache/redisstore => ../redisstore
)
